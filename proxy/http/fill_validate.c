/*
 * A fill's validation (cache/validate.h) of the answer it received: a status the rule counts as a
 * failure, or a 2xx body that does not pass the rule's checks. A failed answer is an upstream error:
 * fill->fail_reason is set (and becomes the waiters' and the leader's 502 message when no stale copy
 * stands in), nothing is stored, and the upstream's health and breaker learn of one failure.
 */
#include "cache/validate.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "http/fill_private.h"
#include "upstream/breaker_fleet.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reasons outlive the fill and its snapshot (a waiter on another worker answers with one after
 * the fill is gone): they are interned for the life of the process. Reasons name config text
 * only, so there are few; past INTERN_MAX distinct ones a generic message is used. */
#define INTERN_MAX 256
static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;
static char *interned[INTERN_MAX];
static size_t ninterned;

static const char *intern(const char *text)
{
    const char *out = "upstream answer failed validation";
    pthread_mutex_lock(&intern_lock);
    size_t i = 0;
    while (i < ninterned && strcmp(interned[i], text) != 0)
        i++;
    if (i < ninterned)
        out = interned[i];
    else if (ninterned < INTERN_MAX)
        out = interned[ninterned++] = dc_strdup(text);
    pthread_mutex_unlock(&intern_lock);
    return out;
}

/* The upstream's health and breaker count the failed answer (its head was counted a success). */
static void note_failure(dc_fill_t *fill, const char *reason)
{
    const dc_config_upstream_t *up = fill->ctx.route->upstream;
    fill->fail_reason = reason;
    dc_log_warn("upstream %s: %s (%s)", up->name, reason, fill->key);
    if (fill->judged)
        return; /* the fetch asked our verdict: it counted the failure on the tier that answered */
    dc_breaker_params_t bp = dc_upstream_breaker_params(up, 0);
    dc_breaker_opening_t o;
    if (dc_upstream_state_failure(&fill->ctx.up_rt->health, &bp, dc_now_mono_ms(), &o))
        dc_breaker_fleet_opened(up->name, 0, &o, bp.max_backoff_ms); /* every instance stops too */
}

bool dc__fill_status_fails(dc_fill_t *fill, int status)
{
    if (!dc_validate_status_fails(fill->ctx.rule, status))
        return false;
    char buf[96];
    snprintf(buf, sizeof(buf), "upstream status %d counts as a failure for this route", status);
    note_failure(fill, intern(buf));
    return true;
}

bool dc__fill_wants_validation(const dc_fill_t *fill, int status)
{
    return status >= 200 && status < 300 && dc_validate_wants_body(fill->ctx.rule);
}

bool dc__fill_holds_for_validation(dc_fill_t *fill)
{
    if (!fill->validating)
        return false;
    const dc_shared_body_t *identity = fill->inflating ? fill->sb_ident : fill->sb;
    if (identity->body.len <= DC_VALIDATE_MAX_BODY)
        return true;
    fill->validating = false; /* too large to check: streams as before (validate.h) */
    return false;
}

int dc__fill_validate_body(dc_fill_t *fill)
{
    if (!fill->validating)
        return 0;
    const dc_shared_body_t *identity = fill->inflating ? fill->sb_ident : fill->sb;
    if (identity->body.len > DC_VALIDATE_MAX_BODY)
        return 0;
    char *flat = dc_body_flatten(&identity->body);
    char reason[256];
    int rc = dc_validate_body(fill->ctx.rule, flat, identity->body.len, dc_now_wall_ms(), reason, sizeof(reason));
    free(flat);
    if (rc == 0)
        return 0;
    char msg[320];
    snprintf(msg, sizeof(msg), "upstream answer failed validation: %s", reason);
    note_failure(fill, intern(msg));
    return DC_EUPSTREAM;
}
