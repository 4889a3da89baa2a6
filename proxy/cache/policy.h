/*
 * RFC 9111 caching policy, as dexcache applies it (pure: no I/O, time is a parameter).
 *
 * Two questions:
 *  1. dc_policy_decide(): may this response be stored, and for how long is it fresh, how long may
 *     it then be served stale while revalidating (SWR) or when the origin fails (SIE)?
 *  2. dc_policy_freshness(): at time `now`, what may be done with a stored entry?
 * Times are wall-clock milliseconds since the epoch (shared with other instances through Redis).
 */
#ifndef DC_CACHE_POLICY_H
#define DC_CACHE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Parsed Cache-Control. Durations in seconds, -1 when the directive is absent. Unknown directives
 * are ignored; a malformed value makes that directive absent (RFC 9111 5.2: be lenient). */
typedef struct dc_cc {
    bool no_store, no_cache, private_, public_, must_revalidate, proxy_revalidate, immutable, only_if_cached;
    int64_t max_age, s_maxage, stale_while_revalidate, stale_if_error, max_stale, min_fresh;
} dc_cc_t;

void dc_cc_init(dc_cc_t *cc);
/* Parse one header value and merge into *cc (call once per Cache-Control line). */
void dc_cc_parse(const char *v, size_t len, dc_cc_t *cc);

/* HTTP-date (IMF-fixdate, RFC 850, asctime) -> seconds since the epoch, or -1. */
int64_t dc_http_date_parse(const char *v, size_t len);
/* IMF-fixdate of `t` (seconds) into buf (>= 30 bytes); returns the length (29). */
size_t dc_http_date_format(int64_t t, char *buf);

typedef struct dc_policy_request {
    bool method_cacheable;  /* GET or HEAD */
    bool has_authorization; /* Authorization header present */
    bool client_no_cache;   /* client sent Cache-Control: no-cache or Pragma: no-cache */
} dc_policy_request_t;

typedef struct dc_policy_response {
    int status;
    bool has_cc;          /* at least one Cache-Control header */
    dc_cc_t cc;           /* merged (valid when has_cc) */
    bool pragma_no_cache; /* Pragma: no-cache (only considered without Cache-Control) */
    int64_t expires_s;    /* Expires as epoch seconds; -1 absent; -2 present but invalid (= already expired) */
    int64_t date_s;       /* Date header; -1 absent */
    int64_t age_s;        /* Age header; -1 absent */
    bool has_set_cookie;
    bool vary_star;  /* Vary: * */
    bool vary_other; /* Vary naming anything but Accept-Encoding (not supported as variants: not stored) */
    bool complete;   /* the whole body arrived (Content-Length matched, transfer ended cleanly) */
} dc_policy_response_t;

typedef enum {
    DC_POLICY_STORE = 0,
    DC_POLICY_NO_RULE,       /* no cache rule matched this path */
    DC_POLICY_METHOD,        /* not GET/HEAD */
    DC_POLICY_AUTHORIZATION, /* request had Authorization and the rule is not public */
    DC_POLICY_STATUS,        /* status not cacheable (5xx, 1xx, 206, ...) or negative_ttl 0 */
    DC_POLICY_NO_STORE,
    DC_POLICY_PRIVATE,
    DC_POLICY_SET_COOKIE,
    DC_POLICY_VARY,
    DC_POLICY_INCOMPLETE,
    DC_POLICY_ZERO_TTL, /* freshness lifetime 0 and no stale window worth keeping */
} dc_policy_verdict_t;

typedef struct dc_policy_decision {
    dc_policy_verdict_t verdict;
    bool negative;           /* stored under negative_ttl (400/404/405/410/414/501) */
    uint64_t fresh_until_ms; /* wall ms; the entry is fresh before this */
    uint64_t swr_until_ms;   /* stale-while-revalidate allowed before this (>= fresh_until) */
    uint64_t sie_until_ms;   /* stale-if-error allowed before this (>= fresh_until) */
    uint64_t keep_until_ms;  /* max(swr, sie): when the entry becomes useless */
    bool no_stale;           /* must-revalidate / proxy-revalidate / no-cache: never served stale */
    uint32_t origin_age_s;   /* Age already accumulated upstream (added to our Age header) */
} dc_policy_decision_t;

/* Short reason for a verdict ("no-store", "set-cookie", ...), for Cache-Status detail and logs. */
const char *dc_policy_verdict_name(dc_policy_verdict_t v);

/*
 * Storability and lifetimes. `rule` may be NULL (no rule matched -> DC_POLICY_NO_RULE).
 * Rules:
 *  - never stored: non-GET/HEAD; Authorization unless rule->is_public; no-store; private;
 *    Set-Cookie; Vary: * or Vary on anything but Accept-Encoding; incomplete body; 5xx and any
 *    status not listed below.
 *  - 200, 203, 204, 300, 301, 308: lifetime rule->ttl_ms; 400, 404, 405, 410, 414, 501: negative,
 *    lifetime rule->negative_ttl_ms (0 = not stored).
 *  - rule->respect_origin: when the origin gave a lifetime (s-maxage, else max-age, else Expires
 *    minus Date (or now)), it replaces the rule's ttl, minus the origin Age; origin
 *    stale-while-revalidate / stale-if-error replace the rule's windows when present. Origin
 *    no-cache (or Pragma: no-cache without Cache-Control) means lifetime 0.
 *  - must-revalidate, proxy-revalidate or no-cache from the origin: no_stale (windows 0), whatever
 *    respect_origin says.
 *  - lifetime 0 with no stale window: DC_POLICY_ZERO_TTL (not stored).
 */
void dc_policy_decide(const dc_config_cache_rule_t *rule, const dc_policy_request_t *req,
                      const dc_policy_response_t *res, uint64_t now_ms, dc_policy_decision_t *out);

typedef enum {
    DC_FRESH = 0, /* serve */
    DC_STALE_SWR, /* serve stale now and refresh in the background */
    DC_STALE_SIE, /* go to the origin; serve stale only if it fails */
    DC_EXPIRED,   /* go to the origin; the entry is useless */
} dc_freshness_t;

/* What may be done with an entry at `now_ms`. `client_revalidate` = the client asked for
 * no-cache and the rule says client_no_cache: revalidate (then a fresh entry is treated as
 * DC_STALE_SIE: fetch, fall back on error). */
dc_freshness_t dc_policy_freshness(uint64_t fresh_until_ms, uint64_t swr_until_ms, uint64_t sie_until_ms, bool no_stale,
                                   bool client_revalidate, uint64_t now_ms);

#endif
