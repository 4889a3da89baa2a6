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

/* A max-age / s-maxage whose value is not a valid delta-seconds (RFC 9111 1.2.2: "1a", "-1", "1.5",
 * empty): the response is stale on arrival (RFC 9111 4.2.1 and 5.2: invalid freshness information). */
#define DC_CC_INVALID INT64_C(-2)

/* Parsed Cache-Control. Durations in seconds, -1 when the directive is absent. Unknown directives
 * are ignored. max-age and s-maxage: the first occurrence wins, valid or not (RFC 9111 4.2.1), and
 * an invalid one is DC_CC_INVALID; the other durations: the first well-formed value, a malformed
 * one leaves the directive absent. no-cache / private: `no_cache` / `private_` are the unqualified
 * forms (the whole response); `no_cache_fields` / `private_fields` say that a qualified form
 * (no-cache="Set-Cookie") named header fields, which dc_cc_names_field() then finds. */
typedef struct dc_cc {
    bool no_store, no_cache, private_, public_, must_revalidate, proxy_revalidate, immutable, only_if_cached;
    bool must_understand, no_cache_fields, private_fields;
    int64_t max_age, s_maxage, stale_while_revalidate, stale_if_error, max_stale, min_fresh;
} dc_cc_t;

void dc_cc_init(dc_cc_t *cc);
/* Parse one header value and merge into *cc (call once per Cache-Control line). */
void dc_cc_parse(const char *v, size_t len, dc_cc_t *cc);
/* True when one Cache-Control value (same syntax, or a targeted field's sf-dictionary) lists
 * header field `name` (case-insensitive) in a qualified no-cache="..." or private="..." directive. */
bool dc_cc_names_field(const char *v, size_t len, const char *name, size_t name_len);

/*
 * A targeted cache-control field (RFC 9213: CDN-Cache-Control, Dexcache-Cache-Control): an
 * sf-dictionary (RFC 8941 3.2). Parses one field line and merges it into *cc (start from
 * dc_cc_init; several lines are merged, later members overriding earlier ones as in a dictionary).
 * Returns false when the line is not a valid sf-dictionary or is empty: the caller then ignores the
 * whole field, as if absent (RFC 9213 2.1). Members: max-age, s-maxage, stale-while-revalidate,
 * stale-if-error take a non-negative sf-integer (another type, or a negative one, leaves the
 * directive absent); no-store, no-cache, private, public, must-revalidate, proxy-revalidate,
 * immutable, must-understand take a boolean (a bare key is true, ?0 is false); no-cache and private
 * also take an sf-string of field names (the qualified forms). Parameters are ignored.
 */
bool dc_cc_parse_targeted(const char *v, size_t len, dc_cc_t *cc);

/* Age (RFC 9111 5.1): of a list, the first member; a value that is not a non-negative integer
 * (sign, fraction, letters, empty) is -1 (the field is ignored); above 2^31 it is 2^31. */
int64_t dc_age_parse(const char *v, size_t len);

/* HTTP-date (IMF-fixdate, RFC 850, asctime) -> seconds since the epoch, or -1. */
int64_t dc_http_date_parse(const char *v, size_t len);
/* IMF-fixdate of `t` (seconds) into buf (>= 30 bytes); returns the length (29). */
size_t dc_http_date_format(int64_t t, char *buf);

typedef struct dc_policy_request {
    bool method_cacheable;  /* GET or HEAD */
    bool has_authorization; /* Authorization header present */
    bool client_no_cache;   /* client sent Cache-Control: no-cache or Pragma: no-cache */
} dc_policy_request_t;

/* Which header the response directives came from (RFC 9213: a targeted field replaces
 * Cache-Control, Expires and Pragma for the storage decision when it applies). */
typedef enum { DC_CC_FROM_CACHE_CONTROL = 0, DC_CC_FROM_DEXCACHE, DC_CC_FROM_CDN } dc_cc_source_t;
#define DC_CC_SOURCES 3

typedef struct dc_policy_response {
    int status;
    bool has_cc;                /* at least one Cache-Control header */
    dc_cc_t cc;                 /* merged (valid when has_cc) */
    bool has_dcc;               /* a valid, non-empty Dexcache-Cache-Control (RFC 9213, targeted at us alone) */
    dc_cc_t dcc;                /* its directives (valid when has_dcc) */
    bool has_cdncc;             /* a valid, non-empty CDN-Cache-Control (used under rule->cdn_role) */
    dc_cc_t cdncc;              /* its directives (valid when has_cdncc) */
    bool pragma_no_cache;       /* Pragma: no-cache (only considered without Cache-Control) */
    int64_t expires_s;          /* Expires as epoch seconds; -1 absent; -2 present but invalid (= already expired) */
    int64_t date_s;             /* Date header (the first); -1 absent or invalid */
    int64_t age_s;              /* Age header (dc_age_parse of the first); -1 absent or invalid */
    int64_t last_modified_s;    /* Last-Modified; -1 absent or invalid (heuristic freshness) */
    bool has_validator;         /* ETag or Last-Modified: worth keeping an entry for revalidation */
    uint64_t response_delay_ms; /* request sent -> response head received (RFC 9111 4.2.3 response_delay) */
    bool has_set_cookie;
    /* per dc_cc_source_t: that field's qualified no-cache / private lists Set-Cookie (then stored
     * without it, when that field decides) */
    bool set_cookie_named[DC_CC_SOURCES];
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
    DC_POLICY_ZERO_TTL,        /* freshness lifetime 0, no stale window and no validator worth keeping */
    DC_POLICY_NO_FRESHNESS,    /* ttl 0 + respect_origin and the origin gave no freshness */
    DC_POLICY_MUST_UNDERSTAND, /* must-understand on a status whose caching rules we do not implement */
} dc_policy_verdict_t;

typedef struct dc_policy_decision {
    dc_policy_verdict_t verdict;
    bool negative;            /* stored under negative_ttl (400/404/405/410/414/501) */
    uint64_t fresh_until_ms;  /* wall ms; the entry is fresh before this */
    uint64_t swr_until_ms;    /* stale-while-revalidate allowed before this (>= fresh_until) */
    uint64_t sie_until_ms;    /* stale-if-error allowed before this (>= fresh_until) */
    uint64_t keep_until_ms;   /* max(swr, sie): when the entry becomes useless */
    bool no_stale;            /* must-revalidate / proxy-revalidate / no-cache: never served stale */
    uint32_t origin_age_s;    /* corrected_initial_age (RFC 9111 4.2.3), added to our Age header */
    dc_cc_source_t cc_source; /* where the directives came from */
    bool strip_fields;        /* a qualified no-cache / private named fields: drop them from the entry */
    bool heuristic;           /* the lifetime is heuristic (rule->heuristic of the time since Last-Modified) */
} dc_policy_decision_t;

/* Short reason for a verdict ("no-store", "set-cookie", ...), for Cache-Status detail and logs. */
const char *dc_policy_verdict_name(dc_policy_verdict_t v);

/*
 * Storability and lifetimes (RFC 9111 3, 4.2). `rule` may be NULL (no rule matched -> NO_RULE).
 * Directives come from Dexcache-Cache-Control when valid, else CDN-Cache-Control when valid and
 * rule->cdn_role, else Cache-Control (+ Expires, Pragma): cc_source. Refusals, in this order:
 *  - non-GET/HEAD; Authorization unless rule->is_public;
 *  - 1xx, 206 (no ranges stored), 304, and anything outside 200..599: STATUS;
 *  - must-understand on a status outside the understood list (200 203 204 300 301 302 307 308 400
 *    404 405 410 414 451 501): MUST_UNDERSTAND; on an understood one, no-store is ignored;
 *  - no-store; unqualified private (qualified private="X": stored without X); Set-Cookie (unless a
 *    qualified no-cache / private names it); Vary: * or Vary on anything but Accept-Encoding;
 *    incomplete body;
 *  - which statuses, and the lifetime:
 *    respect_origin false (today's DEX defaults): 200 203 204 300 301 308 live rule->ttl_ms; 400
 *      404 405 410 414 451 501 are negative and live rule->negative_ttl_ms (0 = STATUS); any other
 *      status: STATUS. Origin lifetimes are not used; no-store / private / no-cache /
 *      must-revalidate still are.
 *    respect_origin true: any final status with explicit freshness (s-maxage, else max-age, else
 *      Expires - Date (or now)) is stored for that lifetime minus the corrected initial age, 5xx and
 *      429 included (fill.c answers a 5xx / 429 with a usable stale copy before asking us). Without
 *      explicit freshness: heuristic freshness when rule->heuristic > 0, the status is heuristically
 *      cacheable (200 203 204 300 301 308 404 405 410 414 451 501) or `public` was sent, and
 *      Last-Modified is not after Date (or now): rule->heuristic * (Date - Last-Modified) capped at
 *      rule->heuristic_max_ms, minus the corrected age; else the rule's ttl / negative_ttl as above
 *      (`public` adds any final status: ttl below 400, negative_ttl from 400); rule->ttl_ms 0 means
 *      the origin decides: NO_FRESHNESS; negative_ttl 0 for a negative status: STATUS.
 *      An invalid max-age / s-maxage, an invalid or past Expires, or no-cache: lifetime 0.
 *  - Windows: the rule's stale_while_revalidate / stale_if_error, replaced under respect_origin by
 *    the origin's when it sent them; none at all (no_stale) under no-cache, must-revalidate,
 *    proxy-revalidate or s-maxage (RFC 9111 5.2.2.10: s-maxage implies proxy-revalidate).
 *  - A lifetime of 0 with no window: stored when the response has a validator (kept to be
 *    revalidated, never served without that), else ZERO_TTL.
 * Current age (RFC 9111 4.2.3): corrected_initial_age = max(apparent_age, Age + response_delay)
 * with apparent_age = response_time - Date counted from the end of Date's second (Date has a
 * resolution of one second: an answer that crossed a second boundary in flight is not one second
 * old). It is origin_age_s, and it is subtracted from origin lifetimes; a rule ttl counts from
 * our receipt of the response.
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
