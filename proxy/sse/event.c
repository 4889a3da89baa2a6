#include "sse/event.h"
#include "core/refcount.h"
#include "core/error.h"
#include "core/fmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DATA "data: "

/* Bytes needed for the data lines: "data: " per line plus one "\n" per line. */
static size_t data_size(const char *const *parts, const size_t *lens, size_t nparts)
{
    size_t lines = 1, bytes = 0;
    bool prev_cr = false;
    for (size_t p = 0; p < nparts; p++) {
        for (size_t i = 0; i < lens[p]; i++) {
            char c = parts[p][i];
            if (c == '\n' && prev_cr) { /* CRLF: one line end */
                prev_cr = false;
                continue;
            }
            prev_cr = c == '\r';
            if (c == '\n' || c == '\r')
                lines++;
            else
                bytes++;
        }
    }
    return bytes + lines * (sizeof(DATA) - 1 + 1);
}

dc_sse_event_t *dc_sse_event_format(uint64_t id, const char *name, const char *const *parts, const size_t *lens,
                                    size_t nparts)
{
    char head[96];
    int hl = id > 0 ? snprintf(head, sizeof(head), "id: %llu\nevent: %s\n", (unsigned long long)id, name)
                    : snprintf(head, sizeof(head), "event: %s\n", name);
    DC_ASSERT(hl > 0 && (size_t)hl < sizeof(head));
    size_t cap = (size_t)hl + data_size(parts, lens, nparts) + 1;
    dc_sse_event_t *e = dc_malloc(sizeof(*e) + cap);
    dc_refcount_init(&e->refs, 1);
    e->id = id;
    char *o = e->bytes;
    memcpy(o, head, (size_t)hl);
    o += hl;
    memcpy(o, DATA, sizeof(DATA) - 1);
    o += sizeof(DATA) - 1;
    bool prev_cr = false;
    for (size_t p = 0; p < nparts; p++) {
        for (size_t i = 0; i < lens[p]; i++) {
            char c = parts[p][i];
            if (c == '\n' && prev_cr) {
                prev_cr = false;
                continue;
            }
            prev_cr = c == '\r';
            if (c == '\n' || c == '\r') {
                *o++ = '\n';
                memcpy(o, DATA, sizeof(DATA) - 1);
                o += sizeof(DATA) - 1;
            } else {
                *o++ = c;
            }
        }
    }
    *o++ = '\n';
    *o++ = '\n';
    e->len = (size_t)(o - e->bytes);
    DC_ASSERT(e->len <= cap);
    return e;
}

static dc_sse_event_t *raw(const char *text, size_t len)
{
    dc_sse_event_t *e = dc_malloc(sizeof(*e) + len);
    dc_refcount_init(&e->refs, 1);
    e->id = 0;
    e->len = len;
    memcpy(e->bytes, text, len);
    return e;
}

dc_sse_event_t *dc_sse_event_comment(const char *text)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf), ": %s\n\n", text);
    return raw(buf, n > 0 && (size_t)n < sizeof(buf) ? (size_t)n : 0);
}

dc_sse_event_t *dc_sse_event_retry(uint64_t ms)
{
    char buf[64];
    int n = snprintf(buf, sizeof(buf), "retry: %llu\n\n", (unsigned long long)ms);
    return raw(buf, (size_t)n);
}

dc_sse_event_t *dc_sse_event_ref(dc_sse_event_t *e)
{
    dc_refcount_take(&e->refs);
    return e;
}

void dc_sse_event_release(dc_sse_event_t *e)
{
    if (e != NULL && dc_refcount_drop(&e->refs))
        free(e);
}

bool dc_sse_parse_last_id(const char *v, size_t len, uint64_t *out)
{
    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    uint64_t id;
    if (len > 19 || !dc_parse_u64(v, len, &id) || id == 0)
        return false;
    *out = id;
    return true;
}
