/*
 * One logical upstream request: attempts with retries (exponential backoff with jitter), API-key
 * injection and rotation, deadlines, and the response streamed to the caller with back-pressure.
 *
 * Lifecycle and ownership:
 *  - dc_fetch_start() copies everything it needs (URL, body, headers) and returns a fetch that the
 *    fetch module owns. The caller gets exactly one of: on_done (after which the fetch frees itself;
 *    do not touch it once on_done returns), or nothing at all after dc_fetch_abort().
 *  - on_head runs once, when the final response head of the attempt that will be used is known
 *    (again only after the caller's judge rejected an answer and another attempt is made).
 *    Retryable answers (connect errors, resets, 502/503/504, 401/403 with another key to try) are
 *    retried before on_head when the request is idempotent; after on_head nothing is retried.
 *  - on_body returns 0 when it took the bytes, or 1 to refuse them: the transfer pauses and the
 *    same bytes are offered again after dc_fetch_resume().
 *  - Deadlines: `timeout_ms` bounds the whole response (every attempt, head and body) from the
 *    first attempt's start; `idle_timeout_ms` bounds the time between two body chunks. Time the
 *    caller keeps the transfer paused does not count. A timed-out attempt is never retried.
 *  - Framing (upstream/framing.h): an answer whose head frames its body ambiguously, or whose body
 *    is longer or shorter than announced, ends with DC_EPROTO and is never retried; the bytes of a
 *    body longer than announced are never offered to on_body. Content-Length, once on_head runs,
 *    is exactly what on_body will have been offered when on_done reports 0.
 * Single-threaded: a fetch lives on the worker loop that started it.
 */
#ifndef DC_UPSTREAM_FETCH_H
#define DC_UPSTREAM_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upstream/curl_uv.h"
#include "upstream/budget.h"
#include "upstream/cause.h"
#include "upstream/keyring.h"
#include "upstream/upstream_state.h"
#include "upstream/tier.h"

typedef struct dc_fetch dc_fetch_t;

typedef struct dc_fetch_header {
    char *name; /* lowercased */
    size_t name_len;
    char *value;
    size_t value_len;
} dc_fetch_header_t;

typedef struct dc_fetch_callbacks {
    void (*on_head)(void *data, dc_fetch_t *f);
    int (*on_body)(void *data, dc_fetch_t *f, const char *buf, size_t len);
    /* err: 0, DC_ETIMEDOUT (not complete by the deadline, or the body stalled), DC_ECONNREFUSED,
     * DC_EPROTO (invalid framing: see above), DC_EUPSTREAM (reset, DNS/TLS failure), DC_EAGAIN (the
     * upstream budget has no slot within the queue timeout, or its queue is full: see
     * dc_fetch_retry_after_ms), DC_EUNAVAIL (the upstream's breaker is open: nothing was sent; see
     * dc_fetch_retry_after_ms). */
    void (*on_done)(void *data, dc_fetch_t *f, int err);
    /* Optional (NULL: every answer is good): the caller's verdict on an answer before it is used,
     * 0 = good, DC_EVALIDATION = it counts as a failure of the attempt's tier (health, breaker).
     * Asked at its head (body false; a status below 500 other than 429, before on_head), and, for
     * an answer whose head was delivered, once its body is complete (body true, before on_done;
     * never for a hedge's answer). A rejected answer is treated like a 5xx: an idempotent fetch
     * moves to another tier or retries after the backoff when its retry rules, retry budget and
     * deadline allow, and on_head then runs again for the new attempt's head (the caller drops
     * what it made of the rejected one); otherwise a rejected head is delivered as it is (the
     * caller fails it itself) and a rejected body ends with on_done(DC_EVALIDATION). */
    int (*judge)(void *data, dc_fetch_t *f, bool body);
} dc_fetch_callbacks_t;

typedef struct dc_fetch_request {
    const char *method;         /* "GET", "POST", ... */
    const char *url;            /* absolute URL */
    const char *const *headers; /* "Name: value" lines, NULL-terminated; copied */
    const char *body;           /* may be NULL; copied */
    size_t body_len;
    bool idempotent; /* retries allowed */
    uint32_t retries;
    uint64_t retry_backoff_ms;
    uint64_t connect_timeout_ms;
    uint64_t timeout_ms;      /* whole response; 0 = 10 s */
    uint64_t idle_timeout_ms; /* between body bytes; 0 = none (the deadline only) */
    bool http2;
    bool tls_verify;
    dc_keyring_t *keyring;       /* may be NULL; borrowed: must outlive the fetch */
    const char *key_header;      /* header name for the key */
    dc_budget_t *budget;         /* may be NULL; borrowed: every attempt reserves a slot */
    dc_budget_t *key_budgets;    /* may be NULL; borrowed, parallel to keyring->keys: each key's own budget
                                  * (rate_per: key), used instead of `budget` for the key an attempt uses */
    struct dc_fleet *fleet;      /* may be NULL: with it, slots are reserved fleet-wide in Redis */
    const char *upstream_name;   /* names the fleet budget (copied) */
    bool background;             /* never queue for the budget (background refreshes yield) */
    dc_upstream_state_t *health; /* may be NULL; borrowed: every attempt's outcome is recorded there and
                                  * its breaker decides whether an attempt may go out */
    dc_breaker_params_t breaker;
    /* Tiers (upstream/tier.h): when ntiers > 0 they replace url's base, keyring, budget, key_budgets,
     * health and upstream_name above, per attempt: `url` must start with tiers[0].url and the
     * attempt to tier i goes to tiers[i].url + the rest. Copied (the pointers inside are borrowed). */
    const dc_fetch_tier_t *tiers;
    size_t ntiers;
    dc_retry_budget_t *retry_budget; /* may be NULL; borrowed: retries and failovers take a slot */
    uint64_t attempt_timeout_ms;     /* 0 = none; else an attempt without a head by then moves to the next tier */
    /* Hedging (idempotent GETs only; hedge_after_ms 0 = off). When the first attempt has no response
     * head after the delay, one more attempt (the hedge) goes to the same tier, or to the next one
     * with hedge_next_tier (the same when there is none). The delay is hedge_after_ms, or with
     * hedge_p95 the p95 of the tier's recent head latencies (upstream_state.h), never below
     * hedge_floor_ms, hedge_after_ms until the tier has 20 recent samples. The hedge needs a slot of
     * the retry budget (held while it runs) and a slot of its tier's budget free now (fleet-wide
     * when the budget is: it never queues); without either it is not sent (skipped_budget). The
     * first final head that is not a failure (5xx, 429) wins: the other attempt is cancelled (its
     * transfer removed; its budget slot given back when it had sent nothing and was reserved
     * locally). Callers see one fetch either way: callbacks and accessors report the winner, on the
     * dc_fetch_t that dc_fetch_start returned. The hedge is one attempt: never retried itself. */
    uint64_t hedge_after_ms;
    bool hedge_p95;
    uint64_t hedge_floor_ms;
    bool hedge_next_tier;
} dc_fetch_request_t;

/* Never fails for valid input (allocation failure is fatal); errors arrive through on_done, never
 * synchronously from inside this call. */
dc_fetch_t *dc_fetch_start(dc_curl_loop_t *cl, const dc_fetch_request_t *req, const dc_fetch_callbacks_t *cbs,
                           void *data);
void dc_fetch_resume(dc_fetch_t *f);
/* No callback runs after this returns; resources are released asynchronously. */
void dc_fetch_abort(dc_fetch_t *f);

/* Valid from on_head until on_done returns. */
int dc_fetch_status(const dc_fetch_t *f);
const char *dc_fetch_reason(const dc_fetch_t *f);
const dc_fetch_header_t *dc_fetch_headers(const dc_fetch_t *f, size_t *n);
/* Content-Length of the response, or -1 when unknown. */
int64_t dc_fetch_content_length(const dc_fetch_t *f);
/* Number of attempts made so far (1 = no retry). */
unsigned dc_fetch_attempts(const dc_fetch_t *f);
/* Microseconds from start to the response head (0 before the head). */
uint64_t dc_fetch_head_us(const dc_fetch_t *f);
/* Monotonic microseconds (dc_now_mono_us) when dc_fetch_start was called. */
uint64_t dc_fetch_started_us(const dc_fetch_t *f);
/* For a 429 received: the pause it asked for in whole seconds (rounded up), from Retry-After or
 * x-ratelimit-reset; 0 when it said nothing. */
uint64_t dc_fetch_upstream_retry_after_s(const dc_fetch_t *f);
/* After DC_EAGAIN: milliseconds until the budget could take the request (for Retry-After). */
uint64_t dc_fetch_retry_after_ms(const dc_fetch_t *f);
/* Tier (1-based) of the attempt that produced the head, or of the last attempt. */
unsigned dc_fetch_tier(const dc_fetch_t *f);
/* Key index used by the attempt that produced the head (-1 = none). */
int dc_fetch_key_index(const dc_fetch_t *f);
/* After an error in on_done: why the last attempt failed (upstream/cause.h): DC_CAUSE_NONE when
 * none failed at the transport (the budget refused, a retried 5xx was the last); its text without
 * secrets ("" with NONE); the name of the upstream (its tier) it went to. With DC_EUNAVAIL and no
 * attempt made: the failure that opened the first tier's breaker, when one was noted. Valid until
 * on_done returns. */
dc_upstream_cause_t dc_fetch_cause(const dc_fetch_t *f);
const char *dc_fetch_cause_text(const dc_fetch_t *f);
const char *dc_fetch_cause_upstream(const dc_fetch_t *f);

#endif
