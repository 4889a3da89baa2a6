/*
 * HTTP/2 abuse guard: rapid reset (CVE-2023-44487) and its relatives, for libh2o 2.2.x, which
 * predates upstream's fix (Debian's 2.2.5 carries the 2019 fixes: output-buffer read stop).
 *
 * What libh2o 2.2.5 already bounds, per connection: 100 open streams (more are refused with
 * RST_STREAM REFUSED_STREAM), 100 requests handled at once, a header block of H2O_MAX_REQLEN
 * (CONTINUATION floods end in GOAWAY PROTOCOL_ERROR), a request body of max_request_entity_size,
 * DATA that disagrees with content-length (RST_STREAM PROTOCOL_ERROR), reading paused while 512 KB
 * of output wait, and the idle timeout (only while no request is in flight). What it lacks and this
 * module adds:
 *   - a reset budget (as newer h2o's `dos_mitigation.reset_budget`): each stream the client resets
 *     before its answer costs one unit, each answered request pays one back (never above the
 *     budget). Once it is spent, new upstream work of the connection is delayed (newer h2o's
 *     `dos_delay`) so that a reset arriving later still cancels it; once the client is a second
 *     budget in debt, the connection gets GOAWAY(ENHANCE_YOUR_CALM) and is closed.
 *   - deferred upstream starts: an HTTP/2 request that will go upstream (miss, pass-through) starts
 *     its fetch only after the current read batch (a uv_check), and is dropped if the client reset
 *     it meanwhile. Hits are never deferred.
 *   - a stall deadline ("reverse" rapid reset): a connection whose responses cannot progress (zero
 *     flow-control window, output the client never reads) for h2_stall_timeout is closed, and at
 *     once (at the next 0.5 s sample) if it holds more than 8 MiB of unsent pass-through bytes.
 *
 * State: one dc_h2guard_t per worker (its thread only), holding a small table of the HTTP/2
 * connections that have requests, keyed by the h2o_conn_t pointer and its unique id. An entry lives
 * while its connection has live requests and is dropped after a retention time without any
 * (connections without requests cost nothing). Requests point to their entry (r->h2) until they are
 * disposed.
 */
#ifndef DC_HTTP_H2GUARD_H
#define DC_HTTP_H2GUARD_H

#include <stdbool.h>
#include <stdint.h>

/* ---- the budget decision (pure, no I/O; time is passed in) ---- */

typedef struct dc_h2guard_limits {
    uint32_t reset_budget; /* resets-before-answer a connection may owe (>= 1) */
    uint64_t delay_ms;     /* how long new upstream work waits once the budget is spent (0 = not delayed) */
} dc_h2guard_limits_t;

typedef struct dc_h2guard_budget {
    int64_t balance;       /* starts at reset_budget; -1 per early reset, +1 per answer (at most reset_budget) */
    uint64_t requests;     /* requests seen */
    uint64_t early_resets; /* requests the client reset before their answer */
    uint64_t answered;     /* requests whose final response was handed to h2o */
} dc_h2guard_budget_t;

typedef enum {
    DC_H2GUARD_OK = 0,    /* carry on */
    DC_H2GUARD_DELAY = 1, /* budget spent: new upstream work waits delay_ms */
    DC_H2GUARD_CLOSE = 2, /* a second budget in debt: GOAWAY(ENHANCE_YOUR_CALM) and close */
} dc_h2guard_verdict_t;

void dc_h2guard_budget_init(dc_h2guard_budget_t *b, const dc_h2guard_limits_t *lim);
/* A request began. */
void dc_h2guard_budget_request(dc_h2guard_budget_t *b);
/* A request ended with its final response handed to h2o. */
void dc_h2guard_budget_answered(dc_h2guard_budget_t *b, const dc_h2guard_limits_t *lim);
/* The client reset a request before its answer; the verdict for the connection. */
dc_h2guard_verdict_t dc_h2guard_budget_reset(dc_h2guard_budget_t *b, const dc_h2guard_limits_t *lim);
/* How long upstream work of a new request waits: 0 = only until the current read batch is
 * processed, else delay_ms (the budget is spent). */
uint64_t dc_h2guard_budget_delay(const dc_h2guard_budget_t *b, const dc_h2guard_limits_t *lim);

/* ---- the stall decision (pure) ----
 * Sampled periodically: `blocked` = the connection holds output it cannot send (a write that has
 * not completed, or streams with pending data: zero window); `progress` = a number that changes
 * whenever the connection makes progress (response bytes framed, requests ended). Stalled = blocked
 * at every sample, with no progress, for at least timeout_ms. */
typedef struct dc_h2guard_stall {
    bool blocked;      /* at the last sample */
    uint64_t since_ms; /* blocked without progress since */
    uint64_t last_progress;
} dc_h2guard_stall_t;

bool dc_h2guard_stall_sample(dc_h2guard_stall_t *s, bool blocked, uint64_t progress, uint64_t now_ms,
                             uint64_t timeout_ms);

/* ---- per-worker state (h2guard.c) ---- */

struct dc_request;
struct dc_worker;
typedef struct dc_h2guard dc_h2guard_t;
typedef struct dc_h2conn dc_h2conn_t;

/* The worker's guard, created on first use (worker thread only; lives as long as the worker). */
dc_h2guard_t *dc_h2guard_of(struct dc_worker *w);
/* Worker teardown, once no request is left: frees the table and closes the guard's handles (the
 * loop must run once more to finish). No-op when the worker never made one. */
void dc_h2guard_destroy(struct dc_worker *w);
/* A new HTTP/2 request (r->req set, HTTP/2): links r to its connection's entry (r->h2). */
void dc_h2guard_attach(struct dc_request *r);
/* r's h2o request is being disposed (before r->req becomes NULL): accounts the answer or the early
 * reset and may close the connection. Unlinks r. */
void dc_h2guard_detach(struct dc_request *r);

/* Upstream work of an HTTP/2 request, deferred: `resume(r, a, b)` runs after the current read
 * batch (or after the delay, when the connection's budget is spent) if the request is still there;
 * otherwise it is dropped. Returns false (nothing queued: run it now) for HTTP/1 requests and for
 * requests already deferred once. Holds a reference to r while queued. */
typedef void (*dc_h2guard_resume_cb)(struct dc_request *r, const char *a, const char *b);
bool dc_h2guard_defer(struct dc_request *r, dc_h2guard_resume_cb resume, const char *a, const char *b);

#endif
