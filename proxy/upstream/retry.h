/*
 * The retry decisions of an upstream fetch (upstream/fetch.c, fetch_xfer.c), as pure functions: no clock, no
 * randomness and no I/O of their own (time and the jitter draw are arguments), so they are unit-tested
 * directly (tests/unit/test_retry.c). The fetch owns the side effects (key quarantine, budgets, timers).
 *
 * The rules:
 *  - only idempotent requests are retried, at most `retries` times after the first attempt, and never
 *    once the caller aborted;
 *  - retried answers: 502, 503, 504; a 401/403 when another key is usable; a 429 only when the pause
 *    it announces (Retry-After, else x-ratelimit-reset, else 1 s) still ends before the deadline;
 *  - retried transport failures: connect refused, nothing received, send/receive errors, a body cut
 *    short before any head, HTTP/2 stream/connection errors;
 *  - attempt n (1-based, already made) waits base * 2^(n-1) (exponent capped at 10), jittered to
 *    [0.5, 1.5) of that; the wait is at least a 429's pause; a retry whose wait does not end
 *    strictly before the deadline is not made.
 */
#ifndef DC_UPSTREAM_RETRY_H
#define DC_UPSTREAM_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upstream/fetch.h"

/* Is another attempt allowed at all? `attempts` = attempts made so far (1 after the first). */
bool dc_retry_allowed(bool idempotent, unsigned attempts, unsigned retries, bool aborted);
/* Statuses retried whatever the key: 502, 503, 504. */
bool dc_retry_status(int status);
/* curl codes (CURLcode values) retried when no head arrived. */
bool dc_retry_curl_code(int curl_code);
/* Does this curl code (no head arrived) say something about the origin: it could not be reached,
 * resolved, spoken to over TLS, or it answered wrongly or not in time? false for failures of our
 * own making (a URL curl cannot use, an option, memory, an aborted transfer), which must not count
 * toward the upstream's breaker (a client could open it for everyone with a malformed target). */
bool dc_retry_origin_failed(int curl_code);

/* The delay before the next attempt: see above. `draw` is a uniform random number (any value: it is
 * reduced modulo 1000 to the jitter [0.5, 1.5) in steps of 0.001). */
uint64_t dc_retry_backoff_ms(uint64_t base_ms, unsigned attempts, long draw);
/* Does a wait of `wait_ms` from `now_ms` end strictly before `deadline_ms`? */
bool dc_retry_fits(uint64_t now_ms, uint64_t wait_ms, uint64_t deadline_ms);

/* A 429's pause in microseconds, from its head: Retry-After in seconds or as an HTTP date (relative
 * to `now_wall_ms`), else x-ratelimit-reset (absolute Unix seconds, to the millisecond), else 0
 * (unknown). Header names are lowercase, values NUL-terminated (dc_fetch_header_t). */
uint64_t dc_retry_after_us(const dc_fetch_header_t *hs, size_t n, uint64_t now_wall_ms);
/* The pause a 429 asks for in milliseconds: its Retry-After, or 1 s when it said nothing. */
uint64_t dc_retry_429_pause_ms(uint64_t retry_after_us);

typedef enum {
    DC_RETRY_DELIVER = 0, /* this head is the answer: hand it to the caller */
    DC_RETRY_AGAIN,       /* drop this answer, retry after the backoff */
    DC_RETRY_AFTER_PAUSE, /* a 429 whose pause fits before the deadline: retry after *pause_ms */
} dc_retry_head_t;

typedef struct dc_retry_head_in {
    int status;
    bool key_rejected;       /* 401/403 answered to the key this attempt used */
    size_t keys_usable;      /* keys usable now (after setting the rejected one aside) */
    bool may_retry;          /* dc_retry_allowed() */
    uint64_t retry_after_us; /* dc_retry_after_us() of this head (429 only, else 0) */
    uint64_t now_ms, deadline_ms;
} dc_retry_head_in_t;

/* What to do with a final response head; *pause_ms is set for DC_RETRY_AFTER_PAUSE (else 0). */
dc_retry_head_t dc_retry_on_head(const dc_retry_head_in_t *in, uint64_t *pause_ms);

#endif
