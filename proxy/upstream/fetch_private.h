/*
 * Internal to upstream/'s fetch (fetch.c, fetch_xfer.c, fetch_slot.c, fetch_hedge.c, fetch_cause.c):
 * the fetch's state and the steps its files call in one another. A fetch lives on the worker loop
 * that started it; nothing here is thread-safe or needs to be.
 *
 *   fetch.c        the lifecycle: start, the retry decisions, the deadline timer, the end (finish,
 *                  release), dc_fetch_resume / dc_fetch_abort and the public accessors
 *   fetch_xfer.c   one attempt's curl transfer: the request it sends, the header, body and debug
 *                  callbacks (framing, the head's checks), and its outcome (on_xfer_done)
 *   fetch_slot.c   where an attempt goes and when: its tier (breakers, the fleet's probe lock), its
 *                  key's account and endpoint group, and its slot of the upstream budget
 *   fetch_hedge.c  hedging: a second attempt when the first has no head in time, and the race
 *   fetch_cause.c  why an attempt failed (upstream/cause.h), scrubbed of secrets, noted and logged
 */
#ifndef DC_UPSTREAM_FETCH_PRIVATE_H
#define DC_UPSTREAM_FETCH_PRIVATE_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "upstream/cause.h"
#include "upstream/fetch.h"
#include "upstream/framing.h"
#include "upstream/tier.h"

#define FETCH_MAGIC 0x46455443u /* "FETC" */

typedef enum {
    ST_RESERVING, /* asking Redis for a fleet-wide slot */
    ST_QUEUED,    /* waiting for the upstream budget's slot */
    ST_FAILING,   /* an error to report on the next loop turn (never from inside dc_fetch_start) */
    ST_ATTEMPT,   /* a curl transfer is running, no head yet */
    ST_BACKOFF,   /* waiting before the next attempt */
    ST_BODY,      /* head delivered, streaming the body */
    ST_FOLLOW,    /* hedging: this fetch's own attempt is over, its running hedge may still answer */
    ST_ADOPTED,   /* hedging: the hedge won; callbacks and accessors report it */
    ST_FINISHED,  /* on_done called or aborted; waiting for handles to close */
} fetch_state_t;

struct dc_fetch {
    uint32_t magic;
    fetch_state_t state;
    dc_curl_loop_t *cl;
    dc_curl_xfer_t xfer;
    uv_timer_t timer; /* deadline / idle / backoff */
    dc_fetch_callbacks_t cbs;
    void *data;
    bool aborted;
    bool in_callback; /* inside a curl callback: can't remove the handle now */
    bool discard;     /* this attempt's answer is being thrown away (retry) */
    bool paused;
    bool head_delivered;
    bool head_request; /* HEAD: no body whatever the head announces */
    bool proto_err;    /* the answer's framing is invalid (head or body): DC_EPROTO, never retried */

    /* request */
    char *method;
    char *url;
    char **req_headers;
    size_t nreq_headers;
    char *body;
    size_t body_len;
    dc_fetch_request_t opts; /* scalar options; pointer fields not used after start */
    dc_keyring_t *keyring;
    char *key_header;
    dc_budget_t *budget;      /* this attempt's: the upstream's, or its key's (rate_per: key) */
    dc_budget_t *key_budgets; /* borrowed; NULL unless rate_per: key */
    struct dc_fleet *fleet;
    char *upstream_name;
    char *budget_name; /* names the fleet budget and cooldown: "<upstream>" or "<upstream>#<key id>" */
    bool queued;       /* holds a place in the budget's queue */
    /* accounts and endpoint groups (upstream/account.h), of this attempt's tier */
    dc_accounts_t *accounts;   /* borrowed; NULL: the tier has none */
    int group;                 /* the request path's endpoint group in tier 1's config, -1 = none */
    uint32_t weight;           /* the request path's cost in the account's budget */
    uint32_t budget_cost;      /* this attempt's cost in `budget` (1 when budget is a separate group's) */
    dc_budget_t *group_budget; /* this attempt's second budget: its group's (NULL: none, or separate) */
    char *group_budget_name;   /* names it in Redis */
    bool group_429;            /* a 429 to this attempt pauses its group, not its account */
    int pending_err;
    uint64_t retry_after_ms;
    struct curl_slist *slist;

    /* attempt state */
    unsigned attempts;
    int key_index;
    int last_err;
    uint64_t pause_ms; /* a 429 asked to wait this long before the next attempt */
    uint64_t started_us;
    uint64_t deadline_ms;     /* monotonic: whole-response deadline (pushed back by client pauses) */
    uint64_t reserve_sent_ms; /* monotonic: when the budget reservation was asked for */
    uint64_t leave_by_ms;     /* monotonic: the latest this attempt may leave for its slot (0 = no slot) */
    unsigned late_rereserves; /* slots given up because the attempt would have left too late */
    uint64_t queue_until_ms;  /* monotonic: the attempt waits for budget until then (queue timeout), re-reservations
                                 included */
    bool rereserving;         /* dc__fetch_start_attempt is reserving again for a slot given up: same queue deadline */
    uint64_t paused_at_ms;    /* when the caller refused bytes (the pause does not count) */
    bool idle_armed;          /* the timer runs for the idle timeout, not the deadline (dc__fetch_arm_timer) */
    uint64_t head_us;
    uint64_t body_bytes; /* body bytes taken by the caller */

    /* response head */
    int status;
    char *reason;
    dc_fetch_header_t *headers;
    size_t nheaders, capheaders;
    int64_t content_length;
    dc_framing_t framing;

    /* tiers (upstream/tier.h) and the retry budget */
    dc_fetch_tier_t tiers[DC_TIERS_MAX];
    size_t ntiers;
    size_t base0_len;             /* length of tiers[0].url at the start of url */
    char *attempt_url;            /* this attempt's URL (its tier's base) */
    unsigned tier;                /* index of this attempt's tier */
    uint32_t tried;               /* tiers tried in this round (bit i = tier i) */
    bool failover_next;           /* the next attempt moves down to a tier not tried in this round, at once */
    unsigned failovers;           /* attempts that were failovers (not counted against `retries`) */
    dc_upstream_state_t *health;  /* this attempt's tier's */
    bool counted;                 /* counted as an active request of the retry budget */
    bool holds_retry;             /* holds a slot of the retry budget */
    bool probe_locked;            /* this attempt is the fleet's probe of its tier (holds the lock) */
    unsigned pending_tier;        /* ST_RESERVING for the probe lock: the tier chosen */
    bool pending_failover;        /* ... and whether it was a failover */
    uint64_t attempt_deadline_ms; /* monotonic: this attempt's own timeout (0 = none) */

    /* why the last failed attempt failed (upstream/cause.h) */
    char errbuf[CURL_ERROR_SIZE]; /* libcurl's words for this attempt (CURLOPT_ERRORBUFFER) */
    dc_upstream_cause_t cause;
    char cause_text[DC_CAUSE_TEXT_MAX]; /* scrubbed */
    const char *cause_upstream;         /* the failing tier's name; borrowed like the tiers */
    /* hedging (fetch.h). Invariant: while `hedge` runs, this fetch is in ST_ATTEMPT or ST_FOLLOW (a
     * retry it would make waits in ST_FOLLOW until the hedge has failed). */
    uint64_t attempt_started_us; /* monotonic: when this attempt's transfer started */
    uint64_t hedge_at_ms;        /* monotonic: the hedge goes then if no head yet (0 = not armed) */
    dc_fetch_t *hedge;           /* the running hedge (a fetch of its own, data = this fetch) */
    unsigned hedge_tier;         /* index of the hedge's tier */
    unsigned hedge_attempts;     /* attempts made by an adopted hedge: no retry of this fetch's own */
    bool hedge_slot;             /* holds the retry-budget slot of the running hedge */
    bool hedge_follow;           /* this attempt's failure answer was dropped for the hedge: no retry */
    bool follow_retry;           /* ST_FOLLOW: retry after follow_delay_ms if the hedge fails */
    uint64_t follow_delay_ms;
    int follow_err;
    dc_fetch_t *winner;   /* ST_ADOPTED: the hedge whose answer this fetch reports */
    bool release_pending; /* released once its transfer is removed (on the next loop turn) */
    bool slot_local;      /* this attempt's budget slot was reserved locally at slot_us (give-back) */
    uint64_t slot_us;
    unsigned slot_share;
};

/* fetch.c */
/* Report `err` on the next loop turn (never from inside dc_fetch_start). */
void dc__fetch_fail_soon(dc_fetch_t *f, int err);
/* A 429's wait: Retry-After, else x-ratelimit-reset, else 0 (unknown). */
uint64_t dc__fetch_retry_after_us_from(const dc_fetch_t *f);
/* Forget the response head received so far (a new attempt, or a new head in this one). */
void dc__fetch_reset_head(dc_fetch_t *f);
/* f->timer callback: removes the transfer of a fetch released or set aside, outside curl's callbacks. */
void dc__fetch_on_drop_timer(uv_timer_t *t);
/* Release everything (the fetch frees itself once its timer has closed). */
void dc__fetch_release(dc_fetch_t *f);
/* May another attempt be made (idempotent, retries left, not aborted)? */
bool dc__fetch_can_retry(dc_fetch_t *f);
/* A retry or failover may start: the retry budget has a slot for this fetch, or there is none. */
bool dc__fetch_take_retry_slot(dc_fetch_t *f);
/* After a failed attempt: does the next one move down to an untried tier, at once? */
bool dc__fetch_plan_failover(dc_fetch_t *f, dc_tier_fail_t why);
/* The caller's judge rejected an answer: may another attempt be made? */
bool dc__fetch_judged_retry(dc_fetch_t *f);
/* After an answer the judge rejected: the next attempt is scheduled (another tier now, or a retry
 * after the backoff) and true, or false when none may be made (judged_retry). */
bool dc__fetch_retry_rejected(dc_fetch_t *f);
/* f->timer callback: deadlines, backoff, budget queue, pending failures, the hedge's moment. */
void dc__fetch_on_deadline(uv_timer_t *t);
/* Arm f->timer for the deadline, the idle timeout, the attempt timeout or the hedge, whichever is first. */
void dc__fetch_arm_timer(dc_fetch_t *f);
/* Report the outcome once (on_done) and release. */
void dc__fetch_finish(dc_fetch_t *f, int err);

/* fetch_xfer.c */
/* Start this attempt's curl transfer (its tier and budget slot are settled). */
void dc__fetch_begin_attempt(dc_fetch_t *f);

/* fetch_slot.c */
/* This attempt's tier's health and breaker learn its outcome; the fleet's probe lock is given back. */
void dc__fetch_record_attempt(dc_fetch_t *f, bool failed);
/* The budgets learn from a final status; `ra` is a 429's Retry-After in microseconds (0 = none). */
void dc__fetch_budget_learn_status(dc_fetch_t *f, uint64_t ra);
/* Every attempt: choose its tier, then take a slot of its budget, then begin it (or fail soon). */
void dc__fetch_start_attempt(dc_fetch_t *f);
/* The attempt's slot has come: it goes, or reserves again when it would leave too late. */
void dc__fetch_leave_for_slot(dc_fetch_t *f);

/* fetch_hedge.c */
/* A final status a hedge race does not take (5xx, 429). */
bool dc__fetch_hedge_failure_status(int status);
/* Is this fetch's first attempt hedged? */
bool dc__fetch_hedge_enabled(const dc_fetch_t *f);
/* The delay before this attempt's hedge. */
uint64_t dc__fetch_hedge_delay_ms(const dc_fetch_t *f);
/* Give back the retry-budget slot of the running hedge, if held. */
void dc__fetch_hedge_slot_release(dc_fetch_t *f);
/* The running hedge lost: it is dropped (never from inside the hedge's own callbacks). */
void dc__fetch_drop_hedge(dc_fetch_t *f);
/* This fetch's own attempt is over while its hedge runs: wait for the hedge, then retry or fail. */
void dc__fetch_follow_hedge(dc_fetch_t *f, int err, bool retry, uint64_t delay_ms);
/* Start the hedge of this attempt, if the budgets allow it (from the timer). */
void dc__fetch_start_hedge(dc_fetch_t *f);

/* fetch_cause.c */
/* The attempt failed: its cause from libcurl's code, errno and `flags`, noted and logged. */
void dc__fetch_note_failure(dc_fetch_t *f, CURLcode rc, unsigned flags, const char *own_text);
/* Nothing went out (every tier refused): the cause is the first tier's last failure noted. */
void dc__fetch_cause_from_health(dc_fetch_t *f);

#endif
