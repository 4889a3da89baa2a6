/*
 * Why an upstream fetch's attempt failed (upstream/cause.h): the cause from libcurl's code and
 * errno, its text scrubbed of key values and private header values, kept for the caller
 * (dc_fetch_cause*) and for /health, and logged at most once per upstream and cause per interval.
 */
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "upstream/fetch_private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CAUSE_LOG_INTERVAL_MS 10000 /* at most one error-log line per upstream and cause in this time */

/* Request headers whose values say nothing secret and may show in a cause (the client's address
 * in X-Forwarded-For is also the address libcurl names when a loopback origin refuses); every other
 * header's value (keys, tokens, cookies, whatever the client forwarded) is masked. */
static bool header_is_public(const char *name, size_t len)
{
    static const char *const names[] = {"x-forwarded-for",
                                        "x-forwarded-proto",
                                        "x-forwarded-host",
                                        "x-forwarded-port",
                                        "x-real-ip",
                                        "forwarded",
                                        "via",
                                        "host",
                                        "accept",
                                        "accept-encoding",
                                        "content-type",
                                        "content-length",
                                        "x-request-id"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
            return true;
    return false;
}

/* The attempt failed: its cause (cause.h) from libcurl's code, errno and `flags`, its text without
 * secrets (libcurl's error buffer, else `own_text`, else curl's generic words), remembered for
 * the caller (dc_fetch_cause*) and for /health, and logged (rate-limited per upstream and cause). */
void dc__fetch_note_failure(dc_fetch_t *f, CURLcode rc, unsigned flags, const char *own_text)
{
    long os_errno = 0;
    if (f->xfer.easy != NULL && rc != CURLE_OK)
        curl_easy_getinfo(f->xfer.easy, CURLINFO_OS_ERRNO, &os_errno);
    f->cause = dc_upstream_cause_classify(rc, (int)os_errno, flags);
    if (f->cause == DC_CAUSE_NONE)
        return;
    const char *text = own_text != NULL ? own_text
                       : f->errbuf[0]   ? f->errbuf
                       : rc != CURLE_OK ? curl_easy_strerror(rc)
                                        : dc_upstream_cause_message(f->cause);
    /* what must not show: key values, request header values (the client's own key among them) */
    size_t nkeys = f->keyring != NULL ? f->keyring->nkeys : 0, ns = 0;
    const char **secrets = dc_calloc(nkeys + f->nreq_headers + 1, sizeof(*secrets));
    for (size_t i = 0; i < nkeys; i++)
        secrets[ns++] = f->keyring->keys[i];
    for (size_t i = 0; i < f->nreq_headers; i++) {
        const char *colon = strchr(f->req_headers[i], ':');
        if (colon != NULL && !header_is_public(f->req_headers[i], (size_t)(colon - f->req_headers[i])))
            secrets[ns++] = colon + 1 + strspn(colon + 1, " \t");
    }
    dc_upstream_cause_scrub(f->cause_text, sizeof(f->cause_text), text, secrets, ns);
    free(secrets);
    const char *name = f->tiers[f->tier].budget_name;
    f->cause_upstream = name != NULL ? name : f->upstream_name != NULL ? f->upstream_name : "";
    if (f->health == NULL) {
        dc_log_debug("upstream %s: %s failure: %s", f->cause_upstream, dc_upstream_cause_name(f->cause), f->cause_text);
        return;
    }
    dc_upstream_state_note_error(f->health, f->cause, f->cause_text, dc_now_wall_ms());
    uint64_t suppressed = 0;
    if (!dc_upstream_state_log_gate(f->health, f->cause, dc_now_mono_ms(), CAUSE_LOG_INTERVAL_MS, &suppressed))
        return;
    if (suppressed > 0)
        dc_log_error("upstream %s: %s failure: %s (%llu more since the last line)", f->cause_upstream,
                     dc_upstream_cause_name(f->cause), f->cause_text, (unsigned long long)suppressed);
    else
        dc_log_error("upstream %s: %s failure: %s", f->cause_upstream, dc_upstream_cause_name(f->cause), f->cause_text);
}

/* Nothing went out (every tier's breaker is open or cordoned): the cause is the first tier's last
 * failure noted, which opened its breaker (dc_fetch_cause says so; nothing is logged again). */
void dc__fetch_cause_from_health(dc_fetch_t *f)
{
    dc_upstream_state_t *h = f->tiers[0].health;
    uint64_t at;
    if (h == NULL || !dc_upstream_state_last_error(h, &f->cause, f->cause_text, sizeof(f->cause_text), &at))
        return;
    const char *name = f->tiers[0].budget_name;
    f->cause_upstream = name != NULL ? name : f->upstream_name != NULL ? f->upstream_name : "";
}
