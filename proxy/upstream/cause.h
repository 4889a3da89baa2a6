/*
 * Why an upstream attempt failed, as pure functions (no I/O, no clock): the cause of a transport
 * failure from libcurl's code, the OS error and our own flags; what the client is told for it (the
 * JSON `error`, the status, whether Retry-After makes sense); and libcurl's error text made safe to
 * show (tests/unit/test_cause.c).
 *
 * The causes, one X-macro table (name, client message, status, Retry-After seconds, 0 = none):
 *  - dns: the host (or the proxy) could not be resolved;
 *  - tls: the TLS handshake failed or the certificate was refused (retrying the same origin gives
 *    the same answer: no Retry-After);
 *  - connect: nobody accepted the connection (refused, unreachable);
 *  - reset: the connection broke before an answer (reset, nothing received, send/receive errors);
 *  - timeout: no complete answer by our deadline, or libcurl's connect timeout;
 *  - proto: the answer's framing is invalid (upstream/framing.h), or it was not HTTP;
 *  - other: anything else (kept as the old generic "upstream failed").
 */
#ifndef DC_UPSTREAM_CAUSE_H
#define DC_UPSTREAM_CAUSE_H

#include <stdbool.h>
#include <stddef.h>

#define DC_UPSTREAM_CAUSE_MAP(X)                                                                                       \
    X(NONE, "none", "upstream failed", 502, 0)                                                                         \
    X(DNS, "dns", "upstream dns failure", 502, 5)                                                                      \
    X(TLS, "tls", "upstream tls failure", 502, 0)                                                                      \
    X(CONNECT, "connect", "upstream connection refused", 502, 2)                                                       \
    X(RESET, "reset", "upstream connection reset", 502, 1)                                                             \
    X(TIMEOUT, "timeout", "upstream timed out", 504, 2)                                                                \
    X(PROTO, "proto", "upstream sent an invalid response", 502, 0)                                                     \
    X(OTHER, "other", "upstream failed", 502, 0)

typedef enum {
#define DC__CAUSE_ENUM(id, name, msg, status, ra) DC_CAUSE_##id,
    DC_UPSTREAM_CAUSE_MAP(DC__CAUSE_ENUM)
#undef DC__CAUSE_ENUM
        DC_CAUSE_COUNT
} dc_upstream_cause_t;

/* Flags: what we know besides libcurl's code. */
#define DC_CAUSE_F_DEADLINE 0x1u /* our own deadline (whole response, idle, attempt) fired */
#define DC_CAUSE_F_FRAMING 0x2u  /* the framing checks refused the answer (head or body) */
#define DC_CAUSE_F_HEAD 0x4u     /* the head was delivered already: a short body is a framing lie */

/* Room for a cause text, NUL included (libcurl's CURL_ERROR_SIZE). */
#define DC_CAUSE_TEXT_MAX 256

/* The cause of a failure: `curl_code` a CURLcode (CURLE_OK when curl did not fail), `os_errno`
 * libcurl's CURLINFO_OS_ERRNO (0 = unknown), `flags` the DC_CAUSE_F_* above. DC_CAUSE_NONE only
 * for CURLE_OK without flags. */
dc_upstream_cause_t dc_upstream_cause_classify(int curl_code, int os_errno, unsigned flags);

/* "dns", "tls", ... (static). */
const char *dc_upstream_cause_name(dc_upstream_cause_t c);
/* The client's JSON `error` for it ("upstream dns failure", ...; static). */
const char *dc_upstream_cause_message(dc_upstream_cause_t c);
/* 504 for timeout, else 502. */
int dc_upstream_cause_status(dc_upstream_cause_t c);
/* Retry-After in seconds when retrying soon makes sense (dns, connect, reset, timeout), else 0. */
unsigned dc_upstream_cause_retry_after_s(dc_upstream_cause_t c);

/* Copy `text` (libcurl's error buffer, or our own words) into dst (cap >= 1, NUL-terminated),
 * without anything secret: a URL's query and fragment and its userinfo ("user:pass@") are
 * dropped, and each of the `nsecrets` strings (key values, request header values; NULL or shorter
 * than 4 bytes are ignored) is replaced by "***". Control characters become spaces; trailing
 * spaces and newlines are trimmed. Returns the length written. */
size_t dc_upstream_cause_scrub(char *dst, size_t cap, const char *text, const char *const *secrets, size_t nsecrets);

#endif
