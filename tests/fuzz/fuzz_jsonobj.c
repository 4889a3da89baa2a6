/* libFuzzer target for the top-level JSON object splitter used by price-id batching: arbitrary
 * upstream bytes must give DC_EPROTO or members whose spans lie inside the input, in order, and
 * re-joining them must parse again to the same members. Never crash or overread. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/jsonobj.h"

typedef struct acc {
    const char *base;
    size_t size;
    const char *last;
    char *out;
    size_t n;
    int count;
} acc_t;

static int check(void *data, const dc_json_member_t *m)
{
    acc_t *a = data;
    if (m->key < a->base || m->value + m->value_len > a->base + a->size || m->key < a->last)
        abort();
    a->last = m->value + m->value_len;
    if (a->out != NULL) {
        a->out[a->n++] = a->count ? ',' : '{';
        a->out[a->n++] = '"';
        memcpy(a->out + a->n, m->key, m->key_len);
        a->n += m->key_len;
        a->out[a->n++] = '"';
        a->out[a->n++] = ':';
        memcpy(a->out + a->n, m->value, m->value_len);
        a->n += m->value_len;
    }
    a->count++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    acc_t a = {buf, size, buf, malloc(size + 2), 0, 0};
    if (dc_json_object_members(buf, size, check, &a) == 0) {
        if (a.count == 0)
            a.out[a.n++] = '{';
        a.out[a.n++] = '}';
        acc_t b = {a.out, a.n, a.out, NULL, 0, 0};
        if (dc_json_object_members(a.out, a.n, check, &b) != 0 || b.count != a.count)
            abort();
    }
    free(a.out);
    free(buf);
    return 0;
}
