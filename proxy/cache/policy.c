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
    case DC_POLICY_NO_FRESHNESS:
        return "no-origin-freshness";
    case DC_POLICY_MUST_UNDERSTAND:
        return "must-understand";
    }
    return "unknown";
}

/* Never stored whatever the headers say: interim answers, partial content (no ranges are stored
 * here), 304 (a revalidation answer, fill.c handles it), and what is not a final status at all. */
static bool status_never(int status)
{
    return status < 200 || status > 599 || status == 206 || status == 304;
}

/* RFC 9110 15.1: heuristically cacheable by default. */
static bool status_heuristic(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 451:
    case 501:
        return true;
    default:
        return false;
    }
}

/* The rule's own statuses (respect_origin false, or nothing from the origin): negative ones live
 * negative_ttl, positive ones ttl. 400 is ours, not RFC 9110's. */
static bool status_rule_negative(int status)
{
    return status == 400 || status == 404 || status == 405 || status == 410 || status == 414 || status == 451 ||
           status == 501;
}

static bool status_rule_positive(int status)
{
    return status == 200 || status == 203 || status == 204 || status == 300 || status == 301 || status == 308;
}

/* must-understand (RFC 9111 5.2.2.3): the statuses whose caching rules this cache implements. */
static bool status_understood(int status)
{
    return status_heuristic(status) || status == 302 || status == 307 || status == 400;
}

static uint64_t epoch_ms(int64_t s)
{
    return (uint64_t)(s < EPOCH_CAP_S ? s : EPOCH_CAP_S) * 1000u;
}

/* Explicit freshness lifetime the origin gave (RFC 9111 4.2.1, shared-cache order: s-maxage,
 * max-age, Expires - Date), in ms, before the age correction; false when it gave none. An invalid
 * max-age / s-maxage and an invalid or past Expires are a lifetime of 0 (stale on arrival).
 * `use_expires` is false when a targeted field decides (RFC 9213 2.2: Expires is ignored then). */
static bool explicit_lifetime(const dc_policy_response_t *res, const dc_cc_t *cc, bool use_expires, uint64_t now_ms,
                              uint64_t *ms)
{
    if (cc != NULL && cc->s_maxage != -1) {
        *ms = cc->s_maxage >= 0 ? delta_ms(cc->s_maxage) : 0;
    } else if (cc != NULL && cc->max_age != -1) {
        *ms = cc->max_age >= 0 ? delta_ms(cc->max_age) : 0;
    } else if (use_expires && res->expires_s < -1) {
        *ms = 0; /* present but invalid: already expired (RFC 9111 5.3) */
    } else if (use_expires && res->expires_s >= 0) {
        uint64_t exp = epoch_ms(res->expires_s);
        /* Expires relative to the origin's own Date, so that its clock skew cancels out */
        uint64_t base = res->date_s >= 0 ? epoch_ms(res->date_s) : now_ms;
        *ms = min_u64(exp > base ? exp - base : 0, DELTA_MAX_S * 1000u);
    } else {
        return false;
    }
    return true;
}

/* Heuristic lifetime (RFC 9111 4.2.2): rule->heuristic of the time from Last-Modified to Date (or
 * now), capped; false when there is no usable Last-Modified (absent, invalid, after Date). */
static bool heuristic_lifetime(const dc_config_cache_rule_t *rule, const dc_policy_response_t *res, uint64_t now_ms,
                               uint64_t *ms)
{
    if (rule->heuristic <= 0 || res->last_modified_s < 0)
        return false;
    uint64_t base = res->date_s >= 0 ? epoch_ms(res->date_s) : now_ms;
    uint64_t lm = epoch_ms(res->last_modified_s);
    if (lm > base)
        return false;
    double h = (double)(base - lm) * (rule->heuristic > 1 ? 1 : rule->heuristic);
    *ms = min_u64(h >= (double)rule->heuristic_max_ms ? rule->heuristic_max_ms : (uint64_t)h, DELTA_MAX_S * 1000u);
    return true;
}

/* corrected_initial_age (RFC 9111 4.2.3) in seconds, capped at 2^31. apparent_age counts from the
 * end of Date's second: Date names a whole second, and the answer was made somewhere inside it. */
static uint64_t corrected_initial_age_s(const dc_policy_response_t *res, uint64_t now_ms)
{
    uint64_t apparent = 0;
    if (res->date_s >= 0) {
        uint64_t date_end = sat_add(epoch_ms(res->date_s), 1000);
        apparent = now_ms > date_end ? (now_ms - date_end) / 1000u : 0;
    }
    uint64_t corrected = res->age_s >= 0 ? (uint64_t)res->age_s + res->response_delay_ms / 1000u : 0;
    return min_u64(max_u64(apparent, corrected), DELTA_MAX_S);
}

/* The directives that decide (RFC 9213 2.2): Dexcache-Cache-Control, then CDN-Cache-Control under
 * cdn_role, each only when valid and non-empty, else Cache-Control (NULL when absent). */
static const dc_cc_t *deciding_cc(const dc_config_cache_rule_t *rule, const dc_policy_response_t *res,
                                  dc_cc_source_t *src)
{
    *src = DC_CC_FROM_CACHE_CONTROL;
    if (res->has_dcc) {
        *src = DC_CC_FROM_DEXCACHE;
        return &res->dcc;
    }
    if (rule != NULL && rule->cdn_role && res->has_cdncc) {
        *src = DC_CC_FROM_CDN;
        return &res->cdncc;
    }
    return res->has_cc ? &res->cc : NULL;
}

/* Does the rule's own lifetime cover this status (respect_origin false, or nothing from the
 * origin)? Negative ones live negative_ttl (0 = not stored), positive ones ttl; under
 * respect_origin, `public` adds every final status (RFC 9111 3: "public" makes it storable). */
static bool rule_negative(const dc_config_cache_rule_t *rule, const dc_cc_t *cc, int status)
{
    return status_rule_negative(status) ||
           (rule->respect_origin && cc != NULL && cc->public_ && status >= 400 && !status_rule_positive(status));
}

static bool rule_positive(const dc_config_cache_rule_t *rule, const dc_cc_t *cc, int status)
{
    return status_rule_positive(status) || (rule->respect_origin && cc != NULL && cc->public_ && status < 400);
}

/* May a response of this status be stored at all (RFC 9111 3), whatever its other directives? */
static bool status_storable(const dc_config_cache_rule_t *rule, const dc_policy_response_t *res, const dc_cc_t *cc,
                            bool targeted, uint64_t now_ms)
{
    int status = res->status;
    if (status_never(status))
        return false;
    if (rule_positive(rule, cc, status) || (rule_negative(rule, cc, status) && rule->negative_ttl_ms > 0))
        return true;
    if (!rule->respect_origin)
        return false;
    uint64_t ms;
    if (explicit_lifetime(res, cc, !targeted, now_ms, &ms))
        return true;
    return (status_heuristic(status) || (cc != NULL && cc->public_)) && heuristic_lifetime(rule, res, now_ms, &ms);
}

/* Why the response may not be stored at all, or DC_POLICY_STORE. Checked in this order, so the
 * reported reason is the first that applies: request side, status, then response directives (a
 * 500 with Set-Cookie is "status": shared with the waiters, not private to the leader). */
static dc_policy_verdict_t refusal(const dc_config_cache_rule_t *rule, const dc_policy_request_t *req,
                                   const dc_policy_response_t *res, const dc_cc_t *cc, dc_cc_source_t src,
                                   uint64_t now_ms)
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
    bool understood = cc != NULL && cc->must_understand && status_understood(res->status);
    if (cc != NULL && cc->must_understand && !understood && !status_never(res->status))
        return DC_POLICY_MUST_UNDERSTAND;
    if (!status_storable(rule, res, cc, src != DC_CC_FROM_CACHE_CONTROL, now_ms))
        return DC_POLICY_STATUS;
    if (cc != NULL && cc->no_store && !understood)
        return DC_POLICY_NO_STORE;
    if (cc != NULL && cc->private_)
        return DC_POLICY_PRIVATE;
    if (res->has_set_cookie && !res->set_cookie_named[src])
        return DC_POLICY_SET_COOKIE;
    if (res->vary_star || res->vary_other)
        return DC_POLICY_VARY;
    if (!res->complete)
        return DC_POLICY_INCOMPLETE;
    return DC_POLICY_STORE;
}

/*
 * Choices the header leaves open, made here:
 *  - Pragma: no-cache (only without Cache-Control or a deciding targeted field) is treated as
 *    Cache-Control: no-cache in every respect.
 *  - A negative status's rule lifetime is negative_ttl_ms; negative_ttl_ms 0 refuses it unless the
 *    origin gave it a lifetime under respect_origin. Stale windows apply alike.
 *  - A rule ttl counts from our receipt (no age correction); origin and heuristic lifetimes have
 *    the corrected initial age taken off, and so have their stale windows past the lifetime (they
 *    run from when the answer became stale, RFC 5861).
 *  - Origin no-cache (unqualified) is a lifetime of 0 also with respect_origin: false. origin_age_s is reported
 * whatever the lifetime's source.
 *  - An explicit lifetime of 0 (max-age=0, no-cache, an invalid max-age, a past Expires) with a
 *    validator is stored, stale at once, to be revalidated: a 304 is cheaper than a full answer.
 *  - When not stored because of a refusal, the times are all now_ms (nothing to keep); for
 *    DC_POLICY_ZERO_TTL they are the computed ones (also all now_ms). origin_age_s, negative and
 *    cc_source are filled whenever known.
 */
void dc_policy_decide(const dc_config_cache_rule_t *rule, const dc_policy_request_t *req,
                      const dc_policy_response_t *res, uint64_t now_ms, dc_policy_decision_t *out)
{
    DC_ASSERT(req != NULL && res != NULL && out != NULL);
    dc_cc_source_t src;
    const dc_cc_t *cc = deciding_cc(rule, res, &src);
    bool targeted = src != DC_CC_FROM_CACHE_CONTROL;
    int status = res->status;

    memset(out, 0, sizeof(*out));
    out->fresh_until_ms = out->swr_until_ms = out->sie_until_ms = out->keep_until_ms = now_ms;
    out->negative = status >= 400;
    out->cc_source = src;
    uint64_t age_s = corrected_initial_age_s(res, now_ms);
    out->origin_age_s = age_s > UINT32_MAX ? UINT32_MAX : (uint32_t)age_s;
    out->verdict = refusal(rule, req, res, cc, src, now_ms);
    if (out->verdict != DC_POLICY_STORE)
        return;
    out->strip_fields = cc != NULL && (cc->no_cache_fields || cc->private_fields);

    bool no_cache = cc != NULL ? cc->no_cache : (!targeted && res->pragma_no_cache);
    /* s-maxage implies proxy-revalidate (RFC 9111 5.2.2.10) where the origin's lifetimes are used */
    out->no_stale =
        no_cache ||
        (cc != NULL && (cc->must_revalidate || cc->proxy_revalidate || (rule->respect_origin && cc->s_maxage != -1)));

    /* the lifetime: from the origin (explicit, else heuristic) under respect_origin, else the rule's */
    uint64_t lifetime = 0;
    bool from_origin = false;
    if (no_cache) {
        /* a lifetime of 0 whatever respect_origin says (RFC 9111 5.2.2.4: never used without
         * revalidation; respect_origin: false overrides lifetimes, not this): stored only to be
         * revalidated, with a validator */
        from_origin = true;
    } else if (rule->respect_origin) {
        if (explicit_lifetime(res, cc, !targeted, now_ms, &lifetime)) {
            from_origin = true;
        } else if ((status_heuristic(status) || (cc != NULL && cc->public_)) &&
                   heuristic_lifetime(rule, res, now_ms, &lifetime)) {
            from_origin = out->heuristic = true;
        }
    }
    uint64_t overage_ms = 0; /* how long before its receipt the answer became stale */
    if (from_origin) {
        uint64_t age_ms = age_s * 1000u;
        overage_ms = age_ms > lifetime ? age_ms - lifetime : 0;
        lifetime = lifetime > age_ms ? lifetime - age_ms : 0;
    } else {
        /* status_storable() let it through on the rule's own lifetime */
        bool negative = rule_negative(rule, cc, status);
        bool positive = rule_positive(rule, cc, status);
        DC_ASSERT(negative ? rule->negative_ttl_ms > 0 : positive);
        if (!negative && rule->ttl_ms == 0 && rule->respect_origin) {
            out->verdict = DC_POLICY_NO_FRESHNESS; /* ttl 0 + respect_origin: the origin decides */
            return;
        }
        lifetime = negative ? rule->negative_ttl_ms : rule->ttl_ms;
    }

    uint64_t swr = rule->stale_while_revalidate_ms, sie = rule->stale_if_error_ms;
    if (rule->respect_origin && cc != NULL && cc->stale_while_revalidate >= 0)
        swr = delta_ms(cc->stale_while_revalidate);
    if (rule->respect_origin && cc != NULL && cc->stale_if_error >= 0)
        sie = delta_ms(cc->stale_if_error);
    if (out->no_stale)
        swr = sie = 0;
    /* the stale windows run from when the answer became stale (RFC 5861), not from its receipt */
    swr = swr > overage_ms ? swr - overage_ms : 0;
    sie = sie > overage_ms ? sie - overage_ms : 0;

    out->fresh_until_ms = sat_add(now_ms, lifetime);
    out->swr_until_ms = sat_add(out->fresh_until_ms, swr);
    out->sie_until_ms = sat_add(out->fresh_until_ms, sie);
    out->keep_until_ms = max_u64(out->swr_until_ms, out->sie_until_ms);
    if (lifetime == 0 && swr == 0 && sie == 0 && !res->has_validator)
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
