/*
 * Server-Sent Events wire format (WHATWG HTML, "server-sent events"), pure.
 *
 * An event is an immutable, reference-counted byte string, formatted once and sent to every
 * subscriber from the same memory. The data of an update is the upstream body: each of its lines
 * becomes a "data:" line (CR, LF and CRLF all end a line, as the client's parser splits them), so
 * a client that joins the data lines with "\n" gets the body back (byte-equal for LF-only bodies).
 */
#ifndef DC_SSE_EVENT_H
#define DC_SSE_EVENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/refcount.h"

typedef struct dc_sse_event {
    dc_refcount_t refs;
    uint64_t id; /* 0 = no id (heartbeats, errors, the final event) */
    size_t len;
    char bytes[];
} dc_sse_event_t;

/* "id: <id>\nevent: <name>\ndata: <line>\n...\n\n" over the `nparts` pieces of the body (a body
 * stored as chunks is formatted without being joined first). id 0 writes no id line. Refcount 1. */
dc_sse_event_t *dc_sse_event_format(uint64_t id, const char *name, const char *const *parts, const size_t *lens,
                                    size_t nparts);
/* A comment line (": text\n\n"): heartbeats. */
dc_sse_event_t *dc_sse_event_comment(const char *text);
/* "retry: <ms>\n\n" */
dc_sse_event_t *dc_sse_event_retry(uint64_t ms);
dc_sse_event_t *dc_sse_event_ref(dc_sse_event_t *e);
void dc_sse_event_release(dc_sse_event_t *e);

/* Parse a Last-Event-ID header value: decimal id >= 1. false when absent or not ours. */
bool dc_sse_parse_last_id(const char *v, size_t len, uint64_t *out);

#endif
