/*
 * RFC 9111 storability and freshness decisions (see cache/policy.h). Pure: time comes in as
 * now_ms, nothing is allocated, nothing is global. The header-value parsers live in cache/cc.c.
 */
#include "cache/policy.h"

#include <string.h>

#include "core/error.h"

/* RFC 9111 1.2.2: the largest delta-seconds we act on; origin lifetimes and windows are capped to
 * it (in ms), so that now_ms plus any of them cannot wrap. */
#define DELTA_MAX_S UINT64_C(2147483648)
/* Epoch seconds beyond which an Expires or Date value is treated as this value (year ~36800):
 * keeps the ms conversion in range for any int64 a caller may hand us. */
#define EPOCH_CAP_S INT64_C(1099511627776)

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* A delta-seconds from a parsed dc_cc_t (>= 0) in ms, capped at 2^31 s. */
static uint64_t delta_ms(int64_t s)
{
    return ((uint64_t)s > DELTA_MAX_S ? DELTA_MAX_S : (uint64_t)s) * 1000u;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

const char *dc_policy_verdict_name(dc_policy_verdict_t v)
{
    switch (v) {
    case DC_POLICY_STORE:
        return "stored";
    case DC_POLICY_NO_RULE:
        return "no-rule";
    case DC_POLICY_METHOD:
        return "method";
    case DC_POLICY_AUTHORIZATION:
        return "authorization";
    case DC_POLICY_STATUS:
        return "status";
    case DC_POLICY_NO_STORE:
        return "no-store";
    case DC_POLICY_PRIVATE:
        return "private";
    case DC_POLICY_SET_COOKIE:
        return "set-cookie";
    case DC_POLICY_VARY:
        return "vary";
    case DC_POLICY_INCOMPLETE:
        return "incomplete";
    case DC_POLICY_ZERO_TTL:
        return "zero-ttl";
    }
    return "unknown";
}

typedef enum { STATUS_UNCACHEABLE, STATUS_POSITIVE, STATUS_NEGATIVE } status_class_t;

/* The lists of policy.h, exactly: everything else (1xx, 201, 206, 302, 304, 307, 5xx but 501...)
 * is never stored. */
static status_class_t status_class(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 300:
    case 301:
    case 308:
        return STATUS_POSITIVE;
    case 400:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
        return STATUS_NEGATIVE;
    default:
        return STATUS_UNCACHEABLE;
    }
}

/* Freshness lifetime the origin gave (RFC 9111 4.2.1, shared-cache order: s-maxage, max-age,
 * Expires - Date), in ms, before the Age correction; false when it gave none. `no_cache` (origin
 * no-cache, or Pragma: no-cache without Cache-Control) is a lifetime of 0. */
static bool origin_lifetime(const dc_policy_response_t *res, const dc_cc_t *cc, bool no_cache, uint64_t now_ms,
                            uint64_t *ms)
{
    if (no_cache) {
        *ms = 0;
    } else if (cc != NULL && cc->s_maxage >= 0) {
        *ms = delta_ms(cc->s_maxage);
    } else if (cc != NULL && cc->max_age >= 0) {
        *ms = delta_ms(cc->max_age);
    } else if (res->expires_s < -1) {
        *ms = 0; /* present but invalid: already expired (RFC 9111 5.3) */
    } else if (res->expires_s >= 0) {
        uint64_t exp = (uint64_t)(res->expires_s < EPOCH_CAP_S ? res->expires_s : EPOCH_CAP_S) * 1000u;
        /* Expires relative to the origin's own Date, so that its clock skew cancels out */
        uint64_t base =
            res->date_s >= 0 ? (uint64_t)(res->date_s < EPOCH_CAP_S ? res->date_s : EPOCH_CAP_S) * 1000u : now_ms;
        *ms = min_u64(exp > base ? exp - base : 0, DELTA_MAX_S * 1000u);
    } else {
        return false;
    }
    return true;
}

/* Why the response may not be stored at all, or DC_POLICY_STORE. Checked in this order, so the
 * reported reason is the first that applies: request side, status, then response directives. */
static dc_policy_verdict_t refusal(const dc_config_cache_rule_t *rule, const dc_policy_request_t *req,
                                   const dc_policy_response_t *res, const dc_cc_t *cc, status_class_t sc)
{
    if (rule == NULL)
        return DC_POLICY_NO_RULE;
    if (!req->method_cacheable)
        return DC_POLICY_METHOD;
    /* Only the operator's "public: true" allows it: RFC 9111 3.5 would also accept the origin's
     * public / s-maxage / must-revalidate, but a shared entry built from one client's credentials
     * is exactly the leak this check exists for. */
    if (req->has_authorization && !rule->is_public)
        return DC_POLICY_AUTHORIZATION;
    if (sc == STATUS_UNCACHEABLE || (sc == STATUS_NEGATIVE && rule->negative_ttl_ms == 0))
        return DC_POLICY_STATUS;
    if (cc != NULL && cc->no_store)
        return DC_POLICY_NO_STORE;
    if (cc != NULL && cc->private_)
        return DC_POLICY_PRIVATE;
    if (res->has_set_cookie)
        return DC_POLICY_SET_COOKIE;
    if (res->vary_star || res->vary_other)
        return DC_POLICY_VARY;
    if (!res->complete)
        return DC_POLICY_INCOMPLETE;
    return DC_POLICY_STORE;
}

/*
 * Choices the header leaves open, made here:
 *  - Pragma: no-cache (only without Cache-Control) is treated as Cache-Control: no-cache in every
 *    respect: lifetime 0 under respect_origin, and no_stale whatever respect_origin says.
 *  - For a negative status the rule's lifetime is negative_ttl_ms, and an origin lifetime replaces
 *    it under respect_origin just as it replaces ttl_ms; negative_ttl_ms 0 still refuses the
 *    status (negative caching is the operator's opt-in). Stale windows apply alike.
 *  - The Age correction is the origin's Age only (no apparent age from Date: our instances' clocks
 *    and the origin's need not agree), and only for origin-given lifetimes: a rule ttl counts
 *    from our receipt of the response.
 *  - When not stored because of a refusal, the times are all now_ms (nothing to keep); for
 *    DC_POLICY_ZERO_TTL they are the computed ones (also all now_ms). origin_age_s and negative
 *    are filled whenever known.
 */
void dc_policy_decide(const dc_config_cache_rule_t *rule, const dc_policy_request_t *req,
                      const dc_policy_response_t *res, uint64_t now_ms, dc_policy_decision_t *out)
{
    DC_ASSERT(req != NULL && res != NULL && out != NULL);
    const dc_cc_t *cc = res->has_cc ? &res->cc : NULL;
    status_class_t sc = status_class(res->status);

    memset(out, 0, sizeof(*out));
    out->fresh_until_ms = out->swr_until_ms = out->sie_until_ms = out->keep_until_ms = now_ms;
    out->negative = sc == STATUS_NEGATIVE;
    out->origin_age_s = res->age_s < 0 ? 0 : res->age_s > UINT32_MAX ? UINT32_MAX : (uint32_t)res->age_s;
    out->verdict = refusal(rule, req, res, cc, sc);
    if (out->verdict != DC_POLICY_STORE)
        return;

    bool no_cache = cc != NULL ? cc->no_cache : res->pragma_no_cache;
    out->no_stale = no_cache || (cc != NULL && (cc->must_revalidate || cc->proxy_revalidate));

    uint64_t lifetime = sc == STATUS_NEGATIVE ? rule->negative_ttl_ms : rule->ttl_ms;
    uint64_t swr = rule->stale_while_revalidate_ms, sie = rule->stale_if_error_ms;
    uint64_t origin;
    if (rule->respect_origin && origin_lifetime(res, cc, no_cache, now_ms, &origin)) {
        uint64_t age_ms = (uint64_t)out->origin_age_s * 1000u;
        lifetime = origin > age_ms ? origin - age_ms : 0;
    }
    if (rule->respect_origin && cc != NULL && cc->stale_while_revalidate >= 0)
        swr = delta_ms(cc->stale_while_revalidate);
    if (rule->respect_origin && cc != NULL && cc->stale_if_error >= 0)
        sie = delta_ms(cc->stale_if_error);
    if (out->no_stale)
        swr = sie = 0;

    out->fresh_until_ms = sat_add(now_ms, lifetime);
    out->swr_until_ms = sat_add(out->fresh_until_ms, swr);
    out->sie_until_ms = sat_add(out->fresh_until_ms, sie);
    out->keep_until_ms = max_u64(out->swr_until_ms, out->sie_until_ms);
    if (lifetime == 0 && swr == 0 && sie == 0)
        out->verdict = DC_POLICY_ZERO_TTL;
}

/* Windows are half-open: fresh before fresh_until_ms (so exactly at it the entry is stale), SWR
 * before swr_until_ms, SIE before sie_until_ms. Where both stale windows cover `now`, SWR wins
 * (it is the more useful answer). */
dc_freshness_t dc_policy_freshness(uint64_t fresh_until_ms, uint64_t swr_until_ms, uint64_t sie_until_ms, bool no_stale,
                                   bool client_revalidate, uint64_t now_ms)
{
    if (now_ms < fresh_until_ms)
        return client_revalidate ? DC_STALE_SIE : DC_FRESH;
    if (no_stale)
        return DC_EXPIRED;
    /* a client asking to revalidate always gets an origin attempt; inside the SWR window the entry
     * may still answer if that attempt fails, since it could have been served without one */
    if (now_ms < swr_until_ms)
        return client_revalidate ? DC_STALE_SIE : DC_STALE_SWR;
    if (now_ms < sie_until_ms)
        return DC_STALE_SIE;
    return DC_EXPIRED;
}
