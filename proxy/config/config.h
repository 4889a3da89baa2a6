/*
 * The configuration snapshot: what a YAML file says, validated and resolved.
 *
 * A dc_config_t is immutable once dc_config_load*() returns it and is shared by every worker
 * thread through an atomic reference count: dc_config_ref() to keep it, dc_config_release() when
 * done (the last release frees everything inside it). Reload builds a new snapshot and swaps it
 * (see server/); requests in flight keep the snapshot they started with.
 *
 * Units: every duration is in milliseconds (uint64_t, "*_ms"), every size in bytes.
 * Key names follow ../shared/design.md "Config contract"; see conf/REFERENCE.md for every key.
 */
#ifndef DC_CONFIG_CONFIG_H
#define DC_CONFIG_CONFIG_H

#include <stdatomic.h>
#include "core/refcount.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DC_CONFIG_MAGIC 0x44434346u /* "DCCF" */

/* A listening address: "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:80", ":8080" (all IPv4), "[::]:8080". */
typedef struct dc_config_listen {
    char *text; /* as written, for logs */
    char *host; /* "127.0.0.1", "::1"; never brackets */
    uint16_t port;
    bool ipv6;
} dc_config_listen_t;

/* One rate window: "45/1s" = 45 requests per 1000 ms. */
typedef struct dc_config_rate {
    uint32_t limit;
    uint64_t window_ms;
} dc_config_rate_t;

typedef enum { DC_RATE_PER_ACCOUNT = 0, DC_RATE_PER_KEY } dc_rate_per_t;

/* upstreams.<name>.tiers[]: one origin of an upstream, in order of preference. */
typedef struct dc_config_tier {
    char *url;   /* base URL, as the upstream's url */
    char **keys; /* this origin's own API keys (may be 0: keyless) */
    size_t nkeys;
    dc_config_rate_t *rates; /* this origin's own budget windows (may be 0) */
    size_t nrates;
} dc_config_tier_t;

#define DC_CONFIG_TIERS_MAX 4

/* upstreams.<name>.accounts[]: keys that share one organisation's limit, with that limit. */
typedef struct dc_config_account {
    char *name;
    char **keys; /* after ${VAR} expansion; empty strings dropped; at least one */
    size_t nkeys;
    dc_config_rate_t *rates; /* the account's fleet-wide budget windows (at least one) */
    size_t nrates;
} dc_config_account_t;

/* upstreams.<name>.groups[]: endpoints with their own rate inside each account's budget. */
typedef struct dc_config_group {
    char *name;
    char **paths; /* "/swap/v2/execute" (exact) or a prefix ending in a star; upstream paths, no query */
    size_t npaths;
    dc_config_rate_t *rates; /* requests per window (weights do not apply), at least one */
    size_t nrates;
    bool separate; /* its own bucket only: a request of the group is not counted in the account's */
} dc_config_group_t;

/* upstreams.<name>.weights: path pattern -> cost of one request in the account's budget. */
typedef struct dc_config_weight {
    char *name; /* path pattern as for groups */
    uint32_t value;
} dc_config_weight_t;

typedef struct dc_config_upstream {
    char *name;  /* map key under upstreams: */
    char *url;   /* "https://api.jup.ag" or "http://127.0.0.1:18081/base"; no trailing slash */
    char **keys; /* API keys (after ${VAR} expansion; empty strings dropped); may be 0 */
    size_t nkeys;
    char *key_header;        /* header carrying the key upstream; default "x-api-key" (lowercased) */
    dc_config_rate_t *rates; /* fleet-wide budget windows (may be 0) */
    size_t nrates;
    dc_rate_per_t rate_per;          /* what `rate` limits: the account (default) or each key */
    uint32_t queue_max;              /* queue: { max } default 1000 */
    uint64_t queue_timeout_ms;       /* queue: { timeout } default 2s */
    uint32_t breaker_failures;       /* breaker: { failures } consecutive failures that open it, default 5 */
    uint64_t breaker_backoff_ms;     /* breaker: { backoff } first pause (also per key), default 1s */
    uint64_t breaker_max_backoff_ms; /* breaker: { max_backoff } default 30s */
    double breaker_failure_ratio;    /* breaker: { failure_ratio } 0..1, 0 = off (default) */
    uint64_t breaker_window_ms;      /* breaker: { window } the ratio's sliding window, default 10s */
    uint32_t breaker_min_requests;   /* breaker: { min_requests } attempts in the window first, default 20 */
    uint64_t connect_timeout_ms;     /* default 2s */
    uint64_t timeout_ms;             /* whole-response deadline, default 10s */
    uint64_t idle_timeout_ms;        /* longest gap between two body bytes, default 5s */
    uint32_t retries;                /* default 2, range 0..10 */
    uint64_t retry_backoff_ms;       /* base of exponential backoff with jitter, default 100ms */
    uint64_t key_quarantine_ms;      /* a key answered 401/403 is set aside this long, default 60s */
    bool http2;                      /* allow HTTP/2 to the upstream when offered (ALPN), default true */
    bool tls_verify;                 /* verify the upstream certificate, default true */
    /* tiers: as written (0 = the single-url form). With tiers, url / keys / rates above are a copy
     * of tiers[0]'s, so every reader of the first origin is unchanged. */
    dc_config_tier_t *tiers;
    size_t ntiers;
    uint64_t attempt_timeout_ms;   /* an attempt without a head by then moves to the next tier; 0 = none */
    uint32_t retry_budget_percent; /* retry_budget: { percent } default 20 */
    uint32_t retry_budget_min;     /* retry_budget: { min_concurrency } default 3 */
    /* accounts: with them, keys above is every account's keys in order (account 0's first) and
     * rates is empty: each account has its own budget. */
    dc_config_account_t *accounts;
    size_t naccounts;
    dc_config_group_t *groups;
    size_t ngroups;
    dc_config_weight_t *weights;
    size_t nweights;
} dc_config_upstream_t;

typedef enum { DC_CLIENT_NO_CACHE_IGNORE = 0, DC_CLIENT_NO_CACHE_REVALIDATE } dc_client_no_cache_t;

/* routes[].cache[].validate: what a 2xx answer's body must be before it is stored or shared. */
typedef enum { DC_VALIDATE_NONE = 0, DC_VALIDATE_JSON } dc_validate_mode_t;

/* routes[].cache[].validate_rules[]: one check on an RFC 6901 JSON pointer (cache/validate.h);
 * exactly one of the three flags is set. */
typedef struct dc_config_validate_rule {
    char *pointer;       /* "" (the whole document) or "/a/0/b~1c" */
    bool absent;         /* the pointer must resolve to nothing */
    bool present;        /* it must resolve to something (null included) */
    bool nonempty_array; /* it must resolve to an array with at least one element */
} dc_config_validate_rule_t;

#define DC_FAIL_STATUS_WORDS 10 /* a bit per status 0..639 */

/* routes[].cache[]: first matching rule (prefix of the upstream path) wins. */
/* `hedge:` of a cache rule (upstream/fetch.h has the rules). */
typedef enum { DC_HEDGE_TIER_SAME = 0, DC_HEDGE_TIER_NEXT } dc_hedge_tier_t;
typedef struct dc_config_hedge {
    bool enabled;         /* the map was given */
    bool p95;             /* after: p95 (the tier's observed p95), else after_ms */
    uint64_t after_ms;    /* after: <duration> */
    uint64_t fallback_ms; /* with p95, until the tier has enough samples */
    uint64_t floor_ms;    /* with p95: never sooner */
    uint32_t max;         /* extra attempts: 1 (0 = off) */
    dc_hedge_tier_t tier; /* same (default) or next */
} dc_config_hedge_t;

typedef struct dc_config_cache_rule {
    char *path;      /* prefix of the upstream path, "/" = everything */
    uint64_t ttl_ms; /* required; 0 only with respect_origin (the origin decides) */
    uint64_t stale_while_revalidate_ms;
    uint64_t stale_if_error_ms;
    uint64_t negative_ttl_ms; /* for 400/404 answers; 0 = not cached */
    bool respect_origin;      /* origin Cache-Control/Expires win when sent; default false */
    char **key_sets;          /* params whose comma lists are sorted + deduplicated in the key */
    size_t nkey_sets;
    char **ignore_params; /* params left out of the key */
    size_t nignore_params;
    char **key_headers; /* request headers forwarded upstream and added to the key (lowercased) */
    size_t nkey_headers;
    double prefetch;                      /* refresh-ahead fraction of ttl (0 = off, else 0.5..0.99) */
    dc_client_no_cache_t client_no_cache; /* default ignore */
    bool is_public;                       /* "public: true": cache even with Authorization */
    double heuristic;                     /* heuristic freshness, fraction of Date - Last-Modified; 0 = off */
    uint64_t heuristic_max_ms;            /* cap of a heuristic lifetime, default 1h */
    bool cdn_role;                        /* dexcache is a CDN for its clients: CDN-Cache-Control applies (RFC 9213) */
    bool forward_cdn_cache_control;       /* the origin's CDN-Cache-Control reaches clients; default true */
    uint32_t max_variants;                /* Vary: variants kept per URL (least recently used goes), default 8 */
    /* validation before storing and sharing (cache/validate.h) */
    dc_validate_mode_t validate;               /* none (default) or json */
    dc_config_validate_rule_t *validate_rules; /* 0..n, all must pass */
    size_t nvalidate_rules;
    char **fail_statuses; /* as written: "400", "404" */
    size_t nfail_statuses;
    uint64_t fail_status_bits[DC_FAIL_STATUS_WORDS]; /* derived at load from fail_statuses */
    char *payload_time;                              /* JSON pointer to the payload's own timestamp, or NULL */
    uint64_t max_payload_age_ms;                     /* an answer older than this by payload_time fails; 0 = off */
    bool validate_body;      /* derived: the body is parsed (validate: json, rules or payload_time) */
    dc_config_hedge_t hedge; /* hedged GETs (upstream/fetch.h) */
} dc_config_cache_rule_t;

typedef enum { DC_ABSENT_IDS_REMEMBER = 0, DC_ABSENT_IDS_REFETCH } dc_absent_ids_t;

/* routes[].batch */
typedef struct dc_config_batch {
    bool enabled;
    char *path;
    char *param;
    uint32_t max;               /* default 50 */
    uint64_t window_ms;         /* default 5ms */
    dc_absent_ids_t absent_ids; /* an id the upstream left out: remembered (stored as {}) or refetched */
} dc_config_batch_t;

/* limit.by: the client IP, a request header, or the identity a plugin set (plugin/: requests
 * without one fall back to the client IP). */
typedef enum { DC_LIMIT_BY_CLIENT = 0, DC_LIMIT_BY_HEADER, DC_LIMIT_BY_PLUGIN } dc_limit_by_t;

/* routes[].limit.tiers.<name>: the rate of clients a plugin put in tier <name> (set_client_id). */
typedef struct dc_config_limit_tier {
    char *name;            /* [A-Za-z0-9_.-]{1,64} */
    dc_config_rate_t rate; /* "600/1m" */
    uint32_t burst;        /* default = rate.limit */
} dc_config_limit_tier_t;

/* routes[].limit: per-client limit. */
typedef struct dc_config_limit {
    bool enabled;
    dc_config_rate_t rate;         /* "10/1s" */
    uint32_t burst;                /* default = rate.limit */
    dc_limit_by_t by;              /* "client" (IP), "header:<name>" or "plugin" */
    char *by_header;               /* lowercased header name when by == DC_LIMIT_BY_HEADER */
    dc_config_limit_tier_t *tiers; /* by: plugin: rates selected by the tier a plugin set; a tier not
                                    * listed (or none) gets rate/burst above */
    size_t ntiers;
} dc_config_limit_t;

/* routes[].cdn: headers toward CDNs and browsers. */
typedef struct dc_config_cdn {
    bool enabled;
    uint64_t max_age_ms;  /* browsers */
    uint64_t s_maxage_ms; /* shared caches */
    uint64_t stale_while_revalidate_ms;
    uint64_t stale_if_error_ms;
    bool cdn_cache_control; /* also send CDN-Cache-Control */
    char **tag_params;      /* query params whose values become Surrogate-Key/Cache-Tag tags */
    size_t ntag_params;
} dc_config_cdn_t;

/* cors: (top level, the default of every route) and routes[].cors: the CORS policy dexcache applies
 * itself (http/cors.h). Absent everywhere = no policy: the upstream's own Access-Control-* headers
 * pass through. The *_value fields are the header values built at load (joined lists). */
#define DC_CORS_VALUE_MAX 1024
typedef struct dc_config_cors {
    bool enabled; /* the map is present */
    char **
        allow_origins; /* normalised: "*", "https://app.example", "https://STAR.example.org" (STAR = the character *) */
    size_t nallow_origins;
    char **allow_methods; /* absent = GET, HEAD, POST */
    size_t nallow_methods;
    char **allow_headers; /* absent = Content-Type, Authorization, X-Api-Key, X-Request-Id */
    size_t nallow_headers;
    char **expose_headers; /* absent = dexcache's debugging and limit headers */
    size_t nexpose_headers;
    uint64_t max_age_ms; /* preflight lifetime in browsers, default 10m */
    bool credentials;    /* Access-Control-Allow-Credentials: true (never with "*") */
    bool any_origin;     /* allow_origins is ["*"] */
    char methods_value[DC_CORS_VALUE_MAX];
    char headers_value[DC_CORS_VALUE_MAX];
    char expose_value[DC_CORS_VALUE_MAX];
    char max_age_value[24];
} dc_config_cors_t;

typedef struct dc_config_route {
    char *prefix; /* "/jup"; no trailing slash (except "/" itself) */
    char *upstream_name;
    dc_config_upstream_t *upstream; /* resolved, points into the same snapshot */
    dc_config_cache_rule_t *cache;  /* 0..n rules */
    size_t ncache;
    char **no_cache; /* path prefixes never cached (denylist), checked before cache rules */
    size_t nno_cache;
    dc_config_batch_t batch;
    dc_config_limit_t limit;
    dc_config_cdn_t cdn;
    bool forward_client_key; /* pass the client's own key_header upstream; default false */
    char **forward_headers;  /* request headers a cacheable request also forwards (lowercased) */
    size_t nforward_headers;
    uint64_t max_body; /* request body cap for this route; default = server.max_body */
    char **plugins;    /* plugin instance names (under plugins:) run in this order; may be 0 */
    size_t nplugins;
    dc_config_cors_t cors; /* this route's own policy (enabled = written); else the top-level one */
} dc_config_route_t;

typedef enum { DC_PLUGIN_ON_ERROR_CLOSED = 0, DC_PLUGIN_ON_ERROR_OPEN } dc_plugin_on_error_t;

struct dc__ynode;
/* plugins[]: one instance of a C plugin (lua-free-plugins/include/dexcache/plugin.h). The file is
 * loaded and the instance built by plugin/ (layer above); config/ only checks the shape. */
typedef struct dc_config_plugin {
    char *name;                    /* instance name ([a-z0-9_-], 1..32), unique among plugins */
    char *path;                    /* the shared object as written; relative = to the config file's folder */
    struct dc__ynode *config;      /* its `config:` map, a copy owned by the snapshot (read through
                                    * config/node.h, positions intact); NULL when absent */
    dc_plugin_on_error_t on_error; /* a hook that fails: closed = 500, open = as if absent */
} dc_config_plugin_t;

typedef struct dc_config_stream {
    char *path; /* client path, e.g. /jup/stream/price */
    char *upstream_name;
    dc_config_upstream_t *upstream;
    char *upstream_path;  /* polled path */
    uint64_t interval_ms; /* default 1s */
    bool on_change;
    uint64_t heartbeat_ms;        /* comment line to idle subscribers, default 15s */
    size_t max_subscriber_buffer; /* bytes queued for one subscriber before it is dropped, default 1MiB */
    /* Resolved at load: polls go through this route's cache (so plain GETs share them), with the
     * route's rule for upstream_path, or poll_rule (ttl = interval / 2) when none matches. */
    const struct dc_config_route *route;
    dc_config_cache_rule_t poll_rule;
} dc_config_stream_t;

typedef struct dc_config {
    uint32_t magic;
    dc_refcount_t refcnt;
    char *path; /* file it came from (or the name given to load_string) */
    /* "FILE:LINE:COL: warning: ..." lines, each ending in '\n', or NULL: what loaded but is likely a
     * mistake (an unset ${NAME} without a default). Whoever loads the config shows them. */
    char *warnings;

    dc_config_listen_t *listen; /* plain HTTP/1.1 + h2c listeners */
    size_t nlisten;
    struct {
        dc_config_listen_t *listen; /* TLS listeners (HTTP/1.1 + HTTP/2 via ALPN) */
        size_t nlisten;
        char *cert; /* PEM certificate chain file */
        char *key;  /* PEM private key file */
    } tls;
    uint32_t workers; /* resolved: "auto" = number of online CPUs */

    struct {
        bool enabled; /* admin: present */
        dc_config_listen_t listen;
        char *token; /* bearer token for mutating endpoints; NULL or "" = none */
    } admin;

    struct {
        char *access; /* "stdout" | "off" | path; default "stdout" */
        int level;    /* dc_log_level_t; default info */
        int format;   /* dc_log_format_t: access line shape; default kv */
    } log;

    struct {
        uint64_t memory;     /* default 256MiB */
        uint64_t max_object; /* default 128MiB */
    } cache;

    struct {
        bool enabled; /* redis: present */
        char *url;    /* redis://host:port/db or unix:///path */
        char *prefix; /* default "dexcache:" */
    } redis;

    struct {
        uint64_t max_body;            /* request body cap, default 1MiB */
        uint64_t max_uri;             /* default 8KiB */
        uint64_t max_header_bytes;    /* default 16KiB */
        uint32_t max_headers;         /* default 100 */
        uint64_t drain_timeout_ms;    /* SIGTERM: finish in-flight requests up to this, default 10s */
        uint64_t idle_timeout_ms;     /* client keep-alive idle timeout, default 30s */
        uint32_t h2_reset_budget;     /* HTTP/2 resets-before-answer a connection may owe, default 100 */
        uint64_t h2_dos_delay_ms;     /* delay of upstream work once that budget is spent, default 100ms */
        uint64_t h2_stall_timeout_ms; /* HTTP/2 connection whose output cannot progress: closed, default 30s */
        char **trusted_proxies;       /* CIDRs whose X-Forwarded-For / CF-Connecting-IP are believed */
        size_t ntrusted_proxies;
    } server;

    /* cdn.purge.cloudflare: a purge at the admin listener is also sent to Cloudflare's purge API
     * (admin/cdnpurge.h). Off when absent, or when zone or token is empty after ${VAR} expansion. */
    struct dc_config_cf_purge {
        bool enabled;        /* cdn.purge.cloudflare: present */
        char *zone;          /* zone id */
        char *token;         /* API token (Bearer); never logged */
        char *api;           /* API base, default "https://api.cloudflare.com/client/v4" (no trailing slash) */
        char *base_url;      /* public scheme://host of dexcache behind Cloudflare (no trailing slash) */
        uint32_t retries;    /* further attempts after a 5xx, 429 or transport error; default 3 */
        uint64_t timeout_ms; /* one attempt's deadline, default 5s */
        uint64_t backoff_ms; /* first pause before a retry (doubling), default 1s */
        uint64_t window_ms;  /* purges within this window go out as one call, default 100ms */
    } cdn_purge_cf;          /* struct dc_config_cf_purge */

    dc_config_upstream_t *upstreams; /* in file order */
    size_t nupstreams;
    dc_config_route_t *routes; /* in file order */
    size_t nroutes;
    dc_config_stream_t *streams;
    size_t nstreams;
    dc_config_plugin_t *plugins; /* in file order */
    size_t nplugins;
    dc_config_cors_t cors; /* the default CORS policy of routes without their own */
} dc_config_t;

/* Size of the error buffer callers should pass. */
#define DC_CONFIG_ERRLEN 1024

/*
 * Load and validate a YAML file. On success returns 0 and *out holds a snapshot with refcnt 1
 * (the caller owns that reference). On failure returns DC_ECONFIG (or DC_EIO when the file can't
 * be read) and writes one line into err: "FILE:LINE:COL: KEY: expected WHAT, found WHAT".
 * Never exits, never binds anything.
 */
int dc_config_load_file(const char *path, dc_config_t **out, char *err, size_t errlen);

/* Same from memory; `name` stands for the file name in messages. `len` bytes of `text`. */
int dc_config_load_string(const char *name, const char *text, size_t len, dc_config_t **out, char *err, size_t errlen);

dc_config_t *dc_config_ref(dc_config_t *cfg);
void dc_config_release(dc_config_t *cfg);

/* Longest-prefix route match on a request path (no query). A prefix "/jup" matches "/jup" and
 * "/jup/..." but not "/jupiter". Returns NULL when nothing matches. Pure. */
const dc_config_route_t *dc_config_route_match(const dc_config_t *cfg, const char *path, size_t pathlen);

/* The stream whose path is exactly [path, path+len), or NULL. Pure. */
const dc_config_stream_t *dc_config_stream_match(const dc_config_t *cfg, const char *path, size_t len);

/* First cache rule of `route` whose path is a prefix of `upstream_path`, after the no_cache denylist.
 * NULL = not cached. Pure. */
const dc_config_cache_rule_t *dc_config_cache_rule_match(const dc_config_route_t *route, const char *upstream_path,
                                                         size_t len);

/* The CORS policy of `route` (its own, else the top-level one), or NULL when neither is written.
 * `route` may be NULL (no route matched): the top-level one. Pure. */
static inline const dc_config_cors_t *dc_config_cors_for(const dc_config_t *cfg, const dc_config_route_t *route)
{
    if (route != NULL && route->cors.enabled)
        return &route->cors;
    return cfg->cors.enabled ? &cfg->cors : NULL;
}

/* An allow_origins entry: checks and normalises `s` in place (lowercase scheme and host, default
 * port dropped). Accepted: "*", scheme://host[:port] with scheme http or https and no path, and
 * scheme://STAR.domain[:port] (any subdomain, at any depth, of a domain with at least two labels).
 * "null" is refused (any sandboxed page or file: sends it). Returns 0, or -1 with *why set to
 * what was expected. Pure. */
int dc_config_cors_origin_normalise(char *s, const char **why);

/* Whether the request's Origin value [origin, origin+len) is allowed by policy p (exact match on the
 * serialised origin, or a wildcard's subdomain with the same scheme and port). Pure. */
bool dc_config_cors_origin_allowed(const dc_config_cors_t *p, const char *origin, size_t len);

/* Value parsers shared with tests and other modules. Return 0 or DC_EINVAL / DC_ERANGE. */
int dc_config_parse_duration_ms(const char *s, uint64_t *out);      /* "500ms" "2s" "5m" "1h" "1d" "3" (s) "1.5s" */
int dc_config_parse_size(const char *s, uint64_t *out);             /* "64KiB" "256MiB" "1GiB" "10KB" "10k" "123" (B) */
int dc_config_parse_rate(const char *s, dc_config_rate_t *out);     /* "45/1s" "2700/60s" "10/s" "600/m" */
int dc_config_parse_listen(const char *s, dc_config_listen_t *out); /* fills host/port/ipv6 (heap strings) */

#endif
