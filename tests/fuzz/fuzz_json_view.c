/* libFuzzer target for json_view's one-pass array scanner (lua-free-plugins/json_view/jv.h) and
 * what is built on it: arbitrary source bytes give -1 or members whose spans lie inside the input,
 * in order and not overlapping, with fields inside their member; re-joining the member spans
 * with ',' in '[...]' scans again to the same count; an index of the input answers a query
 * (match, min, sort both ways, projection) with a JSON array that scans again. Never crash or
 * overread (the input is copied to a buffer of exactly its size). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jv.h"

typedef struct acc {
    const char *base;
    size_t size, last_end, field_from;
    char *out;
    size_t n;
    long count;
} acc_t;

static int on_field(void *ud, const char *k, size_t kl, const char *v, size_t vl)
{
    acc_t *a = ud;
    if (k < a->base + a->field_from || v + vl > a->base + a->size || k + kl > v)
        abort();
    a->field_from = (size_t)(v + vl - a->base);
    return 0;
}

static int on_member(void *ud, size_t start, size_t end)
{
    acc_t *a = ud;
    if (start < a->last_end || end > a->size || end <= start)
        abort();
    a->last_end = end;
    a->field_from = end;
    if (a->out != NULL) {
        a->out[a->n++] = a->count ? ',' : '[';
        memcpy(a->out + a->n, a->base + start, end - start);
        a->n += end - start;
    }
    a->count++;
    return 0;
}

static int sink(void *ud, const char *p, size_t len)
{
    acc_t *a = ud;
    memcpy(a->out + a->n, p, len);
    a->n += len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    jv_scan_ops_t ops = {on_field, on_member};
    acc_t a = {buf, size, 0, 0, malloc(size + 2), 0, 0};
    long n = jv_scan_array(buf, size, &ops, &a, NULL);
    if (n >= 0) {
        if (n != a.count)
            abort();
        if (a.count == 0)
            a.out[a.n++] = '[';
        a.out[a.n++] = ']';
        acc_t b = {a.out, a.n, 0, 0, NULL, 0, 0};
        if (jv_scan_array(a.out, a.n, &ops, &b, NULL) != n)
            abort();
        /* an index and a few answers */
        jv_conf_t c;
        memset(&c, 0, sizeof(c));
        c.max_limit = c.default_limit = 1000;
        jv_match_t *m = &c.match[c.nmatch++];
        m->qname = strdup("k");
        m->fields[m->nfields++] = (unsigned)jv_conf_field(&c, "a");
        m->fields[m->nfields++] = (unsigned)jv_conf_field(&c, "b");
        c.is_match[0] = c.is_match[1] = true;
        int f = jv_conf_field(&c, "n");
        c.is_num[f] = c.has_min[f] = c.is_sort[f] = true;
        char err[128];
        jv_index_t *ix = jv_index_build(&c, buf, size, err, sizeof(err));
        if (ix == NULL)
            abort(); /* it scanned once: it indexes */
        static const char *const qs[] = {"", "sort=-n", "sort=n&min_n=0", "k=1,x&fields=a,n&sort=-n", "k=%22x"};
        for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
            jv_query_t q;
            if (jv_query_parse(&c, qs[i], strlen(qs[i]), &q, err, sizeof(err)) == 0) {
                /* an answer is at most the members (with commas) plus projected fields' keys */
                acc_t o = {NULL, 0, 0, 0, malloc(2 * size + 64 * (size_t)(n + 1) + 16), 0, 0};
                if (jv_answer(&c, ix, &q, sink, &o, err, sizeof(err)) == 0) {
                    acc_t r = {o.out, o.n, 0, 0, NULL, 0, 0};
                    if (jv_scan_array(o.out, o.n, &ops, &r, NULL) < 0)
                        abort();
                }
                free(o.out);
            }
            jv_query_free(&q);
        }
        jv_index_free(ix);
        jv_conf_free(&c);
    }
    free(a.out);
    free(buf);
    return 0;
}
