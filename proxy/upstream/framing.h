/*
 * Reading an upstream response head (pure, no I/O): what each line libcurl hands us is, and whether
 * the head frames its body without ambiguity (RFC 9112 6.1-6.3).
 *
 * dexcache never relays the origin's framing headers (h2o frames what we actually send), so a
 * length it would have to guess is refused instead: Content-Length together with Transfer-Encoding,
 * Content-Lengths that disagree or are not numbers, a Transfer-Encoding other than "chunked", a
 * header line that is not "token: value" (obs-fold, whitespace before the colon, no colon). The
 * fetch reports such an answer as DC_EPROTO, never retried: an origin that frames badly will do it
 * again. Body checks (more or fewer bytes than announced) are the fetch's, with dc_framing_body().
 */
#ifndef DC_UPSTREAM_FRAMING_H
#define DC_UPSTREAM_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DC_HLINE_STATUS = 0, /* "HTTP/1.1 200 OK": a (possibly interim) response starts */
    DC_HLINE_END,        /* the empty line that ends a head */
    DC_HLINE_FIELD,      /* "Name: value" */
    DC_HLINE_INVALID,    /* anything else: the head is malformed */
} dc_hline_kind_t;

/* One line of a response head. Spans point into the parsed buffer. */
typedef struct dc_hline {
    dc_hline_kind_t kind;
    int status;       /* STATUS: the three-digit code, 0 when unreadable */
    const char *name; /* FIELD: the field name as sent (not lowercased) */
    size_t name_len;
    const char *value; /* FIELD: the value without surrounding whitespace; STATUS: the reason phrase */
    size_t value_len;
} dc_hline_t;

/* Classify one line of `len` bytes (with or without its CRLF). Never fails: see `kind`. */
void dc_hline_parse(const char *buf, size_t len, dc_hline_t *out);

/* The framing announced by one head, fed field by field. */
typedef struct dc_framing {
    int64_t content_length; /* -1 = none announced */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool has_te;
    const char *error; /* the first reason the head is unusable (static text), NULL = fine so far */
} dc_framing_t;

void dc_framing_init(dc_framing_t *fr);
/* Feed one field (name compared case-insensitively). */
void dc_framing_field(dc_framing_t *fr, const char *name, size_t nlen, const char *value, size_t vlen);
/* Mark the head malformed (an invalid line) unless an earlier error is recorded. */
void dc_framing_fail(dc_framing_t *fr, const char *why);
/* The verdict at the end of the head: 0, or DC_EPROTO with fr->error set. */
int dc_framing_finish(dc_framing_t *fr);
/* Does a response with this status to this method have a body whose length the head announces?
 * (HEAD, 1xx, 204 and 304 have none, whatever Content-Length says.) */
bool dc_framing_has_body(int status, bool head_request);
/* The body verdict: 0 when `received` bytes is what the head announced (or it announced nothing),
 * DC_EPROTO otherwise. `complete`: the transfer has ended (fewer bytes is then an error too). */
int dc_framing_body(const dc_framing_t *fr, uint64_t received, bool complete);
/* Does a libcurl informational/error text reveal a framing fault it handled silently or reported
 * as a generic receive error? ("Excess found ..." when a body is longer than its Content-Length,
 * "... in chunked-encoding" when a chunk size is malformed.) */
bool dc_framing_curl_text(const char *text, size_t len);

#endif
