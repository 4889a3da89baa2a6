/*
 * Health of one upstream as seen by this process, and its circuit breaker (atomics, written by
 * any worker; time is a parameter, so the rules are unit-tested with an injected clock).
 *
 * Every attempt's outcome is recorded: a failure is a connect error, a reset, a timeout or a 5xx
 * answer; anything else the origin answers is a success. "down" (for /health) = 3+ consecutive
 * failures with no success since.
 *
 * The breaker (the floor of upstream resilience: a dead origin gets a trickle, not a storm):
 *  - closed: every attempt goes out.
 *  - `failures` consecutive failures open it for `backoff`; so does a failure ratio (outlier
 *    detection): when the attempts of the last `window_ms` number at least `min_requests` and
 *    failures / attempts >= `failure_ratio` (0 = off). The window is DC_BREAKER_BUCKETS buckets of
 *    window_ms / DC_BREAKER_BUCKETS each (a bucket's counts saturate at 65535); it starts empty
 *    again whenever the breaker opens or closes. While open no attempt goes out
 *    (dc_upstream_state_admit says OPEN, with the time left).
 *  - when the pause is over it is half-open: one attempt (the probe) goes out, the others are
 *    refused as if open. The probe's failure opens it again for twice the previous pause (up to
 *    `max_backoff`); any success closes it. A probe that never reports (its fetch was abandoned)
 *    is replaced after probe_timeout_ms.
 *
 * The fleet (upstream/breaker_fleet.h) shares openings and closings: dc_upstream_state_failure and
 * _success say when this process changed the state, and dc_upstream_state_fleet_open / _close /
 * _probe_elsewhere apply what another instance did. `opened_by` says who opened it last.
 */
#ifndef DC_UPSTREAM_UPSTREAM_STATE_H
#define DC_UPSTREAM_UPSTREAM_STATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upstream/cause.h"

typedef struct dc_breaker_params {
    uint32_t failures;   /* consecutive failures that open it */
    uint64_t backoff_ms; /* first pause */
    uint64_t max_backoff_ms;
    uint64_t probe_timeout_ms; /* a probe unheard of for this long is replaced (its fetch's deadline) */
    double failure_ratio;      /* 0 = off; else failures / attempts in the window that open it */
    uint64_t window_ms;        /* the ratio's sliding window */
    uint32_t min_requests;     /* attempts in the window before the ratio counts */
} dc_breaker_params_t;

/* Recent head latencies of one origin, for hedging's p95 (lock-free: any worker records). Buckets
 * grow by 1.25x from 1 ms (the last one holds everything above ~6 s); two 10 s generations, so a
 * reading covers the last 10 to 20 s. A generation is zeroed by the first recorder that finds it
 * old: a sample racing with that zeroing may be lost, which a percentile estimate tolerates. */
#define DC_LATWIN_BUCKETS 41
#define DC_LATWIN_GEN_MS 10000
typedef struct dc_latwin {
    _Atomic uint64_t gen[2]; /* generation number (now / DC_LATWIN_GEN_MS + 1) each half holds; 0 = empty */
    _Atomic uint32_t n[2][DC_LATWIN_BUCKETS];
} dc_latwin_t;

/* Record one head latency. */
void dc_latwin_record(dc_latwin_t *w, uint64_t now_ms, uint64_t us);
/* The p-th percentile (0 < p < 100) of the latencies recorded in the last 10-20 s, in microseconds
 * (the upper bound of its bucket), or 0 with fewer than min_samples samples. */
uint64_t dc_latwin_percentile_us(dc_latwin_t *w, uint64_t now_ms, unsigned p, uint32_t min_samples);
/* Upper bound of bucket i in microseconds (UINT64_MAX for the last). */
uint64_t dc_latwin_bound_us(unsigned i);
#define DC_BREAKER_BUCKETS 10

/* Who opened the breaker last. */
typedef enum { DC_OPENED_NONE = 0, DC_OPENED_LOCAL, DC_OPENED_FLEET } dc_opened_by_t;

typedef struct dc_upstream_state {
    _Atomic uint64_t consecutive_failures;
    _Atomic uint64_t last_success_ms;
    _Atomic uint64_t last_failure_ms;
    /* breaker */
    _Atomic uint64_t open_until_ms;  /* 0 = closed */
    _Atomic uint32_t trips;          /* openings since the last success: the pause doubles each time */
    _Atomic uint64_t probe_at_ms;    /* half-open: when the probe went out (0 = none out) */
    _Atomic uint64_t opened_total;   /* metrics: times the breaker opened */
    _Atomic uint64_t refused_total;  /* metrics: attempts not sent because it was open */
    _Atomic bool cordoned;           /* set aside by hand (admin): no attempt goes out, whatever the breaker */
    _Atomic uint64_t answered_total; /* metrics: answers delivered from this origin (tiers) */
    /* the last transport failure (for /health), under _err_lock: a spin lock held for a copy */
    _Atomic uint32_t _err_lock;
    dc_upstream_cause_t _last_cause; /* DC_CAUSE_NONE: none yet */
    uint64_t _last_error_wall_ms;
    char _last_error[DC_CAUSE_TEXT_MAX];
    /* the error log's rate limit, per cause: the start of the current window (monotonic ms, 0 =
     * none yet) and the lines suppressed in it */
    _Atomic uint64_t _log_window_ms[DC_CAUSE_COUNT];
    _Atomic uint64_t _log_suppressed[DC_CAUSE_COUNT];
    dc_latwin_t latency;   /* heads of attempts to this origin (hedging's p95) */
    _Atomic int opened_by; /* dc_opened_by_t of the last opening (NONE once closed) */
    /* failure ratio window: per bucket, bucket number (32 bits) | attempts (16) | failures (16) */
    _Atomic uint64_t window[DC_BREAKER_BUCKETS];
} dc_upstream_state_t;

/* An opening this process decided (for the fleet): how long, and the how-many-th in a row. */
typedef struct dc_breaker_opening {
    uint64_t pause_ms;
    uint32_t trips;
} dc_breaker_opening_t;

typedef enum {
    DC_BREAKER_PASS = 0, /* closed: send */
    DC_BREAKER_PROBE,    /* half-open: send this one, it is the probe */
    DC_BREAKER_OPEN,     /* do not send; *retry_in_ms says when to try again */
} dc_breaker_verdict_t;

/* May an attempt go out now? */
dc_breaker_verdict_t dc_upstream_state_admit(dc_upstream_state_t *s, const dc_breaker_params_t *p, uint64_t now_ms,
                                             uint64_t *retry_in_ms);
/* The same verdict without taking the probe or counting a refusal (a peek, for choosing a tier). */
dc_breaker_verdict_t dc_upstream_state_peek(dc_upstream_state_t *s, const dc_breaker_params_t *p, uint64_t now_ms);
/* An attempt succeeded. Returns true when that closed a breaker that was open or half-open. */
bool dc_upstream_state_success(dc_upstream_state_t *s, const dc_breaker_params_t *p, uint64_t now_ms);
/* An attempt failed. Returns true when that opened the breaker (*out, may be NULL, says how). */
bool dc_upstream_state_failure(dc_upstream_state_t *s, const dc_breaker_params_t *p, uint64_t now_ms,
                               dc_breaker_opening_t *out);
/* Failures and attempts in the ratio window at now_ms. */
void dc_upstream_state_window(dc_upstream_state_t *s, const dc_breaker_params_t *p, uint64_t now_ms, uint32_t *attempts,
                              uint32_t *failures);

/* Another instance opened it: open until now_ms + remaining_ms unless it already is open at least
 * that long; the count of openings in a row becomes at least `trips` (so the next pause grows
 * fleet-wide). Any probe of ours is forgotten. Returns true when the state changed. */
bool dc_upstream_state_fleet_open(dc_upstream_state_t *s, uint64_t now_ms, uint64_t remaining_ms, uint32_t trips);
/* Another instance's probe succeeded: closed, as after a success here (without counting one).
 * Returns true when it was open or half-open. */
bool dc_upstream_state_fleet_close(dc_upstream_state_t *s);
/* Half-open, and the fleet's probe is another instance's: refuse as if our probe were out
 * (until that instance reports, or probe_timeout_ms). */
void dc_upstream_state_probe_elsewhere(dc_upstream_state_t *s, uint64_t now_ms);
/* "local", "fleet" or "none". */
const char *dc_upstream_state_opened_by_name(dc_upstream_state_t *s);
/* The pause after the n-th consecutive failure of something (n >= 1): backoff * 2^(n-1), capped.
 * Also used for a key whose refresh keeps failing. */
uint64_t dc_breaker_backoff_ms(const dc_breaker_params_t *p, uint32_t n);
/* "up", "down" or "unknown" (never used yet). */
const char *dc_upstream_state_name(dc_upstream_state_t *s, uint64_t now_ms);
/* "closed", "open" or "half-open" at now_ms. */
const char *dc_upstream_state_breaker_name(dc_upstream_state_t *s, uint64_t now_ms);
uint64_t dc_upstream_state_failures(dc_upstream_state_t *s);

/* Remember a failure for /health: its cause, its (already scrubbed) text, its Unix time in ms.
 * Any worker. */
void dc_upstream_state_note_error(dc_upstream_state_t *s, dc_upstream_cause_t cause, const char *text,
                                  uint64_t wall_ms);
/* The last failure noted: false when none; else *cause, the text in buf (cap >= 1) and *wall_ms. */
bool dc_upstream_state_last_error(dc_upstream_state_t *s, dc_upstream_cause_t *cause, char *buf, size_t cap,
                                  uint64_t *wall_ms);
/* Copy the last failure noted from `from` (a reload keeps what /health showed). */
void dc_upstream_state_inherit_error(dc_upstream_state_t *to, dc_upstream_state_t *from);
/* The error log's rate limit: may a line about `cause` be written at now_ms (monotonic)? At most one
 * per cause per `interval_ms` (any worker; exactly one caller wins a new window). true: write it,
 * and *suppressed = the lines refused since the last one written (to say so in it); false: the
 * line is counted as suppressed. */
bool dc_upstream_state_log_gate(dc_upstream_state_t *s, dc_upstream_cause_t cause, uint64_t now_ms,
                                uint64_t interval_ms, uint64_t *suppressed);

#endif
