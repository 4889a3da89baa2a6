/*
 * The `auth` plugin: authenticates dexcache's clients (never the upstream keys) with API keys and/or
 * JWT bearer tokens, before the client limit and the cache (on_request), and hands the verified
 * identity and tier to the route's `limit: {by: plugin}`.
 *
 *   plugins:
 *     - name: auth
 *       path: auth.so
 *       config:
 *         api_keys: { header: x-api-key, keys: ["${APP_KEY_1}", {key: "${APP_KEY_2}", id: app2, tier: pro}],
 *                     file: keys.txt }                       # or query: api_key
 *         jwt: { alg: ES256, jwks_file: jwks.json, leeway: 30s, iss: https://issuer, aud: [dexcache],
 *                required: [exp], identity_claim: sub, tier_claim: plan }
 *         tiers: { pro: pro, enterprise: pro, free: free }   # credential tier -> limit tier
 *         default_tier: free
 *
 * A request with an API key (header or query parameter) is judged on the key alone; otherwise an
 * `Authorization: Bearer <jwt>` is verified (jwt.h: alg pinned by config, signature, exp/nbf with
 * leeway, iss, aud, required claims; a per-worker cache of verified tokens). Refusals are answered
 * here with dexcache's JSON error: 401 with an RFC 6750 challenge
 * (`WWW-Authenticate: Bearer realm="...", error="invalid_token", error_description="..."`, no
 * error for a missing credential), or 403 when a valid credential's tier is not in `tiers`. Such
 * answers are never cached and nothing goes upstream (plugin.h, respond_error).
 *
 * Keys and secrets are read once per instance (instance_new): a reload (SIGHUP) builds a new
 * instance with the files as they are then, so rotation is a file edit and a SIGHUP. mbedtls
 * contexts and the token cache are per worker (worker_init), never shared.
 *
 * Only <dexcache/plugin.h>, the C library, mbedtls and cJSON: built as a third party would.
 */
#include <dexcache/plugin.h>

#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "apikeys.h"
#include "flood.h"
#include "jwt.h"

/* reasons of this file on top of jwt.h's, for the counters */
enum { AUTH_FORBIDDEN_TIER = DCA_R__COUNT, AUTH_NREASONS };

typedef struct tier_map {
    char *from, *to;
} tier_map_t;

typedef struct auth_inst {
    char *name;
    /* API keys: `header` and/or `query` name where a key is looked for */
    dca_apikeys_t *keys;
    char *key_header, *key_query;
    /* JWT */
    dca_jwt_t *jwt;
    char *jwt_header; /* "authorization" unless configured */
    /* tiers */
    tier_map_t *tiers;
    size_t ntiers;
    int has_tiers;
    char *default_tier;
    char *realm;
    /* failed-auth flood protection: per client address, shared by the workers (NULL: off) */
    dca_flood_t *flood;
    /* counters, all workers */
    _Atomic uint64_t accepted, accepted_cached, refused[AUTH_NREASONS];
} auth_inst_t;

typedef struct auth_worker {
    dca_jwt_verifier_t *v; /* NULL without jwt */
} auth_worker_t;

static const dexcache_host_t *host;
DEXCACHE_PLUGIN_EXPORT const dexcache_plugin_t dexcache_plugin;

/* ---- options ---- */

static const dexcache_option_t string_elem[] = {{.name = "", .type = DEXCACHE_OPT_STRING}, {0}};
static const dexcache_option_t key_elem[] = {
    {.name = "", .type = DEXCACHE_OPT_ANY, .doc = "a key, or a map {key, id, tier}"}, {0}};
static const dexcache_option_t api_keys_opts[] = {
    {"header", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "request header carrying the key (for example x-api-key)"},
    {"query", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "query parameter carrying the key (for example api_key)"},
    {"keys", DEXCACHE_OPT_LIST, 0, 0, 0, key_elem, "keys: strings, or maps {key, id, tier}"},
    {"file", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "file of keys, one `KEY [ID [TIER]]` a line"},
    {0}};
static const dexcache_option_t jwt_opts[] = {
    {"alg", DEXCACHE_OPT_STRING, DEXCACHE_OPT_REQUIRED, 0, 0, NULL, "HS256, HS384, HS512, RS256 or ES256"},
    {"secret", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "HMAC secret (HS*), at least as long as the hash"},
    {"public_key_file", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "PEM public key (RS256, ES256)"},
    {"jwks_file", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "JWK Set file (RS256, ES256), keys chosen by kid"},
    {"kid", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "kid of public_key_file's key (default: any)"},
    {"leeway", DEXCACHE_OPT_DURATION, 0, 0, 86400000, NULL, "clock skew allowed on exp and nbf"},
    {"iss", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "the accepted issuer"},
    {"aud", DEXCACHE_OPT_ANY, 0, 0, 0, NULL, "accepted audience(s): a string or a list"},
    {"required", DEXCACHE_OPT_LIST, 0, 0, 0, string_elem, "claims every token must carry"},
    {"identity_claim", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "claim naming the client (default sub)"},
    {"tier_claim", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "claim naming the client's tier"},
    {"header", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "header carrying `Bearer <token>` (default authorization)"},
    {"max_token", DEXCACHE_OPT_SIZE, 0, 64, 1048576, NULL, "longest accepted token (default 8KB)"},
    {"cache_entries", DEXCACHE_OPT_INT, 0, 0, 1 << 20, NULL, "verified tokens cached per worker (0: none)"},
    {0}};
static const dexcache_option_t flood_opts[] = {
    {"failures", DEXCACHE_OPT_INT, 0, 0, 1000000, NULL,
     "refusals of one client address within `window` that block it (default 20; 0: off)"},
    {"window", DEXCACHE_OPT_DURATION, 0, 1, 86400000, NULL, "the window failures are counted in (default 1m)"},
    {"block", DEXCACHE_OPT_DURATION, 0, 1, 86400000, NULL, "how long a blocked address gets 429 (default 1m)"},
    {0}};
static const dexcache_option_t auth_opts[] = {
    {"api_keys", DEXCACHE_OPT_MAP, 0, 0, 0, api_keys_opts, "API keys"},
    {"jwt", DEXCACHE_OPT_MAP, 0, 0, 0, jwt_opts, "JWT bearer tokens"},
    {"tiers", DEXCACHE_OPT_MAP, 0, 0, 0, NULL, "credential tier -> limit tier; other tiers get 403"},
    {"default_tier", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "tier of a credential that names none"},
    {"realm", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "realm of the WWW-Authenticate challenge (default dexcache)"},
    {"flood", DEXCACHE_OPT_MAP, 0, 0, 0, flood_opts,
     "failed-auth flood protection: an address with `failures` refusals in `window` gets 429 for `block`, "
     "without any signature check"},
    {0}};

/* ---- instance ---- */

static void inst_free(void *p)
{
    auth_inst_t *a = p;
    if (a == NULL)
        return;
    free(a->name);
    dca_apikeys_free(a->keys);
    free(a->key_header);
    free(a->key_query);
    dca_jwt_free(a->jwt);
    free(a->jwt_header);
    for (size_t i = 0; i < a->ntiers; i++) {
        free(a->tiers[i].from);
        free(a->tiers[i].to);
    }
    free(a->tiers);
    free(a->default_tier);
    free(a->realm);
    dca_flood_free(a->flood);
    free(a);
}

/* a scalar as a malloc'd string, or NULL when absent */
static int get_str(const dexcache_conf_t *map, const char *key, char **out)
{
    const dexcache_conf_t *n = host->conf_get(map, key);
    const char *v;
    size_t len;
    *out = NULL;
    if (n == NULL)
        return 0;
    if (host->conf_string(n, &v, &len) != DEXCACHE_CONTINUE || memchr(v, '\0', len) != NULL)
        return -1;
    *out = strndup(v, len);
    return 0;
}

static char *lower(char *s)
{
    for (char *p = s; p != NULL && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return s;
}

static char *resolve(const char *dir, const char *path)
{
    if (path[0] == '/' || dir == NULL || dir[0] == '\0')
        return strdup(path);
    size_t n = strlen(dir) + strlen(path) + 2;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, path);
    return p;
}

static int conf_api_keys(auth_inst_t *a, const dexcache_conf_t *m, const char *dir, char *err, size_t errlen)
{
    if (get_str(m, "header", &a->key_header) != 0 || get_str(m, "query", &a->key_query) != 0)
        return host->conf_error(m, err, errlen, "header and query are strings");
    lower(a->key_header);
    if (a->key_header == NULL && a->key_query == NULL)
        return host->conf_error(m, err, errlen, "api_keys needs a header or a query parameter name");
    if ((a->key_header != NULL && a->key_header[0] == '\0') || (a->key_query != NULL && a->key_query[0] == '\0'))
        return host->conf_error(m, err, errlen, "api_keys: an empty header or query name");
    a->keys = dca_apikeys_new();
    if (a->keys == NULL)
        return host->conf_error(m, err, errlen, "out of memory");
    char e[512];
    const dexcache_conf_t *keys = host->conf_get(m, "keys");
    for (size_t i = 0; keys != NULL && i < host->conf_len(keys); i++) {
        const dexcache_conf_t *k = host->conf_at(keys, i, NULL), *kn = k;
        const char *key = NULL, *id = NULL, *tier = NULL;
        size_t klen = 0, l;
        if (host->conf_string(k, &key, &klen) != DEXCACHE_CONTINUE) {
            kn = host->conf_get(k, "key");
            if (kn == NULL || host->conf_string(kn, &key, &klen) != DEXCACHE_CONTINUE)
                return host->conf_error(k, err, errlen, "expected a key, or a map {key, id, tier}");
            for (size_t j = 0; j < host->conf_len(k); j++) {
                const char *name = NULL;
                host->conf_at(k, j, &name);
                if (name == NULL || (strcmp(name, "key") != 0 && strcmp(name, "id") != 0 && strcmp(name, "tier") != 0))
                    return host->conf_error(k, err, errlen, "a key map holds key, id and tier only, found %s",
                                            name ? name : "?");
            }
            if (host->conf_get(k, "id") != NULL && host->conf_string(host->conf_get(k, "id"), &id, &l) != 0)
                return host->conf_error(k, err, errlen, "id is a string");
            if (host->conf_get(k, "tier") != NULL && host->conf_string(host->conf_get(k, "tier"), &tier, &l) != 0)
                return host->conf_error(k, err, errlen, "tier is a string");
        }
        if (dca_apikeys_add(a->keys, key, klen, id, tier, e, sizeof(e)) != 0)
            return host->conf_error(kn, err, errlen, "keys[%zu]: %s", i, e);
    }
    char *file = NULL;
    if (get_str(m, "file", &file) != 0)
        return host->conf_error(m, err, errlen, "file is a string");
    if (file != NULL) {
        char *path = resolve(dir, file);
        int rc = path != NULL ? dca_apikeys_load_file(a->keys, path, e, sizeof(e)) : -1;
        free(path);
        free(file);
        if (rc != 0)
            return host->conf_error(host->conf_get(m, "file"), err, errlen, "%s", e);
    }
    if (dca_apikeys_count(a->keys) == 0)
        return host->conf_error(m, err, errlen, "api_keys has no key (keys or file)");
    return DEXCACHE_CONTINUE;
}

/* a list of strings (or one string when `one` allows it) as a malloc'd array */
static int conf_strings(const dexcache_conf_t *n, int one, char ***out, size_t *count)
{
    const char *v;
    size_t len;
    *out = NULL;
    *count = 0;
    if (n == NULL)
        return 0;
    if (one && host->conf_string(n, &v, &len) == DEXCACHE_CONTINUE) {
        *out = calloc(1, sizeof(char *));
        (*out)[0] = strndup(v, len);
        *count = 1;
        return 0;
    }
    size_t k = host->conf_len(n);
    if (k == 0 || host->conf_at(n, 0, NULL) == NULL)
        return -1;
    *out = calloc(k, sizeof(char *));
    for (size_t i = 0; i < k; i++) {
        const char *key = NULL;
        const dexcache_conf_t *e = host->conf_at(n, i, &key);
        if (key != NULL || host->conf_string(e, &v, &len) != DEXCACHE_CONTINUE)
            return -1;
        (*out)[(*count)++] = strndup(v, len);
    }
    return 0;
}

static void free_strings(char **l, size_t n)
{
    for (size_t i = 0; l != NULL && i < n; i++)
        free(l[i]);
    free(l);
}

static int conf_jwt(auth_inst_t *a, const dexcache_conf_t *m, const char *dir, char *err, size_t errlen)
{
    char *alg_s = NULL, *secret = NULL, *pem = NULL, *jwks = NULL, *kid = NULL, *iss = NULL, *idc = NULL, *tierc = NULL;
    char **aud = NULL, **req = NULL;
    size_t naud = 0, nreq = 0;
    int rc = DEXCACHE_ERROR;
    char e[512];
    if (get_str(m, "alg", &alg_s) || get_str(m, "secret", &secret) || get_str(m, "public_key_file", &pem) ||
        get_str(m, "jwks_file", &jwks) || get_str(m, "kid", &kid) || get_str(m, "iss", &iss) ||
        get_str(m, "identity_claim", &idc) || get_str(m, "tier_claim", &tierc) ||
        get_str(m, "header", &a->jwt_header)) {
        rc = host->conf_error(m, err, errlen, "expected strings");
        goto out;
    }
    if (conf_strings(host->conf_get(m, "aud"), 1, &aud, &naud) != 0) {
        rc = host->conf_error(host->conf_get(m, "aud"), err, errlen, "aud is a string or a list of strings");
        goto out;
    }
    if (conf_strings(host->conf_get(m, "required"), 0, &req, &nreq) != 0) {
        rc = host->conf_error(host->conf_get(m, "required"), err, errlen, "required is a list of claim names");
        goto out;
    }
    dca_alg_t alg = dca_alg_parse(alg_s, strlen(alg_s));
    if (alg == DCA_ALG_NONE) {
        rc = host->conf_error(host->conf_get(m, "alg"), err, errlen,
                              "expected HS256, HS384, HS512, RS256 or ES256, found \"%s\" (none is never accepted)",
                              alg_s);
        goto out;
    }
    int nsrc = (secret != NULL) + (pem != NULL) + (jwks != NULL);
    if (nsrc != 1) {
        rc = host->conf_error(m, err, errlen, "jwt needs exactly one of secret, public_key_file, jwks_file (found %d)",
                              nsrc);
        goto out;
    }
    dca_keyset_t *ks = NULL;
    int krc;
    const dexcache_conf_t *src;
    if (secret != NULL) {
        src = host->conf_get(m, "secret");
        krc = dca_keyset_from_secret(alg, secret, strlen(secret), &ks, e, sizeof(e));
    } else {
        src = host->conf_get(m, pem != NULL ? "public_key_file" : "jwks_file");
        char *path = resolve(dir, pem != NULL ? pem : jwks);
        krc = path == NULL  ? -1
              : pem != NULL ? dca_keyset_from_pem_file(alg, path, kid, &ks, e, sizeof(e))
                            : dca_keyset_from_jwks_file(alg, path, &ks, e, sizeof(e));
        free(path);
    }
    if (krc != 0) {
        rc = host->conf_error(src, err, errlen, "%s", e);
        goto out;
    }
    uint64_t leeway_ms = 0, max_token = 0;
    int64_t cache = DCA_JWT_DEFAULT_CACHE;
    if (host->conf_get(m, "leeway") != NULL)
        host->conf_duration_ms(host->conf_get(m, "leeway"), &leeway_ms);
    if (host->conf_get(m, "max_token") != NULL)
        host->conf_size(host->conf_get(m, "max_token"), &max_token);
    if (host->conf_get(m, "cache_entries") != NULL)
        host->conf_int(host->conf_get(m, "cache_entries"), &cache);
    dca_jwt_conf_t c = {.leeway = (int64_t)(leeway_ms / 1000),
                        .iss = iss,
                        .aud = (const char *const *)aud,
                        .naud = naud,
                        .required = (const char *const *)req,
                        .nrequired = nreq,
                        .identity_claim = idc,
                        .tier_claim = tierc,
                        .max_token = (size_t)max_token,
                        .cache_entries = (size_t)cache,
                        .no_cache = cache == 0};
    a->jwt = dca_jwt_new(&c, ks, e, sizeof(e));
    if (a->jwt == NULL) {
        rc = host->conf_error(m, err, errlen, "%s", e);
        goto out;
    }
    if (a->jwt_header == NULL)
        a->jwt_header = strdup("authorization");
    lower(a->jwt_header);
    rc = DEXCACHE_CONTINUE;
out:
    if (secret != NULL) {
        memset(secret, 0, strlen(secret));
        free(secret);
    }
    free(alg_s);
    free(pem);
    free(jwks);
    free(kid);
    free(iss);
    free(idc);
    free(tierc);
    free_strings(aud, naud);
    free_strings(req, nreq);
    return rc;
}

static int inst_new(const dexcache_instance_args_t *args, void **instance, char *err, size_t errlen)
{
    auth_inst_t *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return DEXCACHE_ERROR;
    }
    a->name = strdup(args->name);
    const dexcache_conf_t *cfg = args->config, *n;
    int rc = DEXCACHE_CONTINUE;
    if ((n = host->conf_get(cfg, "api_keys")) != NULL)
        rc = conf_api_keys(a, n, args->config_dir, err, errlen);
    if (rc == DEXCACHE_CONTINUE && (n = host->conf_get(cfg, "jwt")) != NULL)
        rc = conf_jwt(a, n, args->config_dir, err, errlen);
    if (rc == DEXCACHE_CONTINUE && a->keys == NULL && a->jwt == NULL)
        rc = host->conf_error(cfg, err, errlen, "auth needs api_keys, jwt or both");
    if (rc == DEXCACHE_CONTINUE && (n = host->conf_get(cfg, "tiers")) != NULL) {
        a->has_tiers = 1;
        size_t k = host->conf_len(n);
        a->tiers = calloc(k ? k : 1, sizeof(*a->tiers));
        for (size_t i = 0; i < k && rc == DEXCACHE_CONTINUE; i++) {
            const char *from = NULL, *to;
            size_t len;
            const dexcache_conf_t *v = host->conf_at(n, i, &from);
            if (from == NULL || host->conf_string(v, &to, &len) != DEXCACHE_CONTINUE || len == 0 || len > DCA_TIER_MAX)
                rc = host->conf_error(v ? v : n, err, errlen, "tiers maps a credential tier to a limit tier name");
            else {
                a->tiers[i].from = strdup(from);
                a->tiers[i].to = strndup(to, len);
                a->ntiers++;
            }
        }
    }
    if (rc == DEXCACHE_CONTINUE &&
        (get_str(cfg, "default_tier", &a->default_tier) != 0 || get_str(cfg, "realm", &a->realm) != 0))
        rc = host->conf_error(cfg, err, errlen, "default_tier and realm are strings");
    if (rc == DEXCACHE_CONTINUE && a->realm != NULL && strpbrk(a->realm, "\"\\\r\n") != NULL)
        rc = host->conf_error(host->conf_get(cfg, "realm"), err, errlen, "a realm holds no quote or backslash");
    if (rc == DEXCACHE_CONTINUE && a->realm == NULL)
        a->realm = strdup("dexcache");
    if (rc == DEXCACHE_CONTINUE) {
        const dexcache_conf_t *f = host->conf_get(cfg, "flood");
        int64_t failures = 20;
        uint64_t window_ms = 60000, block_ms = 60000;
        if (f != NULL) {
            if (host->conf_get(f, "failures") != NULL)
                host->conf_int(host->conf_get(f, "failures"), &failures);
            if (host->conf_get(f, "window") != NULL)
                host->conf_duration_ms(host->conf_get(f, "window"), &window_ms);
            if (host->conf_get(f, "block") != NULL)
                host->conf_duration_ms(host->conf_get(f, "block"), &block_ms);
        }
        if (failures > 0 && (a->flood = dca_flood_new((uint32_t)failures, window_ms, block_ms)) == NULL)
            rc = host->conf_error(cfg, err, errlen, "out of memory");
    }
    if (rc != DEXCACHE_CONTINUE) {
        inst_free(a);
        return DEXCACHE_ERROR;
    }
    *instance = a;
    return DEXCACHE_CONTINUE;
}

static int worker_init(void *instance, unsigned worker, void **wstate)
{
    auth_inst_t *a = instance;
    auth_worker_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return DEXCACHE_ERROR;
    if (a->jwt != NULL) {
        char e[256];
        if ((w->v = dca_jwt_verifier_new(a->jwt, e, sizeof(e))) == NULL) {
            host->log(&dexcache_plugin, NULL, DEXCACHE_LOG_ERROR, "%s: worker %u: %s", a->name, worker, e);
            free(w);
            return DEXCACHE_ERROR;
        }
    }
    *wstate = w;
    return DEXCACHE_CONTINUE;
}

static void worker_fini(void *instance, unsigned worker, void *wstate)
{
    auth_worker_t *w = wstate;
    if (w == NULL)
        return;
    auth_inst_t *a = instance;
    if (w->v != NULL) {
        dca_tcache_stats_t st;
        dca_jwt_verifier_stats(w->v, &st);
        host->log(&dexcache_plugin, NULL, DEXCACHE_LOG_DEBUG,
                  "%s: worker %u token cache: %llu hits, %llu misses, %llu evictions", a->name, worker,
                  (unsigned long long)st.hits, (unsigned long long)st.misses, (unsigned long long)st.evictions);
    }
    dca_jwt_verifier_free(w->v);
    free(w);
}

/* ---- requests ---- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int refuse(dexcache_req_t *r, auth_inst_t *a, int reason)
{
    atomic_fetch_add_explicit(&a->refused[reason], 1, memory_order_relaxed);
    char challenge[256], msg[160];
    const char *name = reason == AUTH_FORBIDDEN_TIER ? "forbidden_tier" : dca_reason_name((dca_reason_t)reason);
    host->log(&dexcache_plugin, r, DEXCACHE_LOG_DEBUG, "%s: refused (%s)", a->name, name);
    host->metric_add(&dexcache_plugin, r, "refused", name, 1);
    /* a credential that failed (not a missing one, nor a valid one of a tier not admitted) counts
     * against the client's address */
    if (a->flood != NULL && reason != DCA_R_MISSING && reason != AUTH_FORBIDDEN_TIER &&
        dca_flood_fail(a->flood, host->req_client_ip(r), now_ms()))
        host->metric_add(&dexcache_plugin, r, "flood_blocks", "", 1);
    if (reason == AUTH_FORBIDDEN_TIER) {
        host->respond_error(r, 403, "forbidden: this credential's tier may not use this route");
        return DEXCACHE_ANSWERED;
    }
    /* RFC 6750 3.1: no error code when the request carried no credential */
    int n = reason == DCA_R_MISSING ? snprintf(challenge, sizeof(challenge), "Bearer realm=\"%s\"", a->realm)
                                    : snprintf(challenge, sizeof(challenge),
                                               "Bearer realm=\"%s\", error=\"invalid_token\", error_description=\"%s\"",
                                               a->realm, dca_reason_desc((dca_reason_t)reason));
    if (n > 0 && (size_t)n < sizeof(challenge))
        host->resp_set_header(r, "www-authenticate", 16, challenge, (size_t)n);
    snprintf(msg, sizeof(msg), "unauthorized: %s (%s)", dca_reason_desc((dca_reason_t)reason), name);
    host->respond_error(r, 401, msg);
    return DEXCACHE_ANSWERED;
}

/* the credential's tier as the limit knows it; -1 when `tiers` does not admit it */
static int map_tier(const auth_inst_t *a, const char *tier, const char **out)
{
    if (tier[0] == '\0')
        tier = a->default_tier != NULL ? a->default_tier : "";
    if (!a->has_tiers) {
        *out = tier[0] ? tier : NULL;
        return 0;
    }
    for (size_t i = 0; i < a->ntiers; i++)
        if (strcmp(a->tiers[i].from, tier) == 0) {
            *out = a->tiers[i].to;
            return 0;
        }
    return -1;
}

/* `kind` names the credential ("key" or "jwt"): the identity the limit sees is "kind:id", so an API
 * key's id and a token's subject that happen to be equal never share one bucket. */
static int accept_identity(dexcache_req_t *r, auth_inst_t *a, const char *kind, const char *id, size_t id_len,
                           const char *tier, int cached)
{
    const char *limit_tier;
    if (map_tier(a, tier, &limit_tier) != 0)
        return refuse(r, a, AUTH_FORBIDDEN_TIER);
    char ident[512];
    int il = snprintf(ident, sizeof(ident), "%s:%.*s", kind, (int)(id_len > 480 ? 480 : id_len), id);
    if (il <= 0 || host->set_client_id(r, ident, (size_t)il, limit_tier) != DEXCACHE_CONTINUE)
        return DEXCACHE_ERROR;
    /* the credentials are dexcache's, never the upstream's: drop every header this instance reads
     * them from (also the one not used), so that the answer is not personal to the cache and the
     * upstream never sees them (ABI 1.1) */
    if (a->key_header != NULL && host->req_remove_header(r, a->key_header, strlen(a->key_header)) != DEXCACHE_CONTINUE)
        return DEXCACHE_ERROR;
    if (a->jwt_header != NULL && host->req_remove_header(r, a->jwt_header, strlen(a->jwt_header)) != DEXCACHE_CONTINUE)
        return DEXCACHE_ERROR;
    /* and the query parameter (ABI 1.2): not upstream, not in the cache key */
    if (a->key_query != NULL && host->req_remove_query(r, a->key_query, strlen(a->key_query)) != DEXCACHE_CONTINUE)
        return DEXCACHE_ERROR;
    atomic_fetch_add_explicit(cached ? &a->accepted_cached : &a->accepted, 1, memory_order_relaxed);
    return DEXCACHE_CONTINUE;
}

/* exactly one occurrence of a header: CONTINUE, ERROR when absent, ANSWERED (refused) when repeated */
static int one_header(dexcache_req_t *r, auth_inst_t *a, const char *name, const char **v, size_t *len)
{
    if (host->req_header(r, name, strlen(name), v, len) != DEXCACHE_CONTINUE)
        return DEXCACHE_ERROR;
    const char *v2;
    size_t l2;
    if (host->req_header_at(r, name, strlen(name), 1, &v2, &l2) == DEXCACHE_CONTINUE)
        return refuse(r, a, DCA_R_MALFORMED);
    return DEXCACHE_CONTINUE;
}

/* A request with a credential from an address the flood protection blocks: 429, no check at all. */
static int flood_gate(dexcache_req_t *r, auth_inst_t *a)
{
    uint64_t retry_ms;
    if (a->flood == NULL || !dca_flood_blocked(a->flood, host->req_client_ip(r), now_ms(), &retry_ms))
        return DEXCACHE_CONTINUE;
    char v[24];
    int n = snprintf(v, sizeof(v), "%llu", (unsigned long long)((retry_ms + 999) / 1000));
    host->resp_set_header(r, "retry-after", 11, v, (size_t)n);
    host->metric_add(&dexcache_plugin, r, "refused", "flood", 1);
    host->respond_error(r, 429, "too many failed authentication attempts from this address");
    return DEXCACHE_ANSWERED;
}

static int on_request(dexcache_req_t *r, void *instance, void *wstate)
{
    auth_inst_t *a = instance;
    auth_worker_t *w = wstate;
    const char *v;
    size_t len;
    int rc;

    /* an API key, when the request carries one, decides alone */
    if (a->keys != NULL) {
        const char *qv = NULL;
        size_t ql = 0;
        int in_query = a->key_query != NULL &&
                       host->req_query(r, a->key_query, strlen(a->key_query), &qv, &ql) == DEXCACHE_CONTINUE;
        /* a key in the query leaves the request at once (qv is a copy): accepted or refused, it
         * reaches neither the upstream nor the access log (the host redacts what is removed) */
        if (in_query && host->req_remove_query(r, a->key_query, strlen(a->key_query)) != DEXCACHE_CONTINUE)
            return DEXCACHE_ERROR;
        int found = 0;
        if (a->key_header != NULL) {
            rc = one_header(r, a, a->key_header, &v, &len);
            if (rc == DEXCACHE_ANSWERED)
                return rc;
            found = rc == DEXCACHE_CONTINUE;
        }
        if (!found && in_query) {
            v = qv;
            len = ql;
            found = 1;
        }
        if (found) {
            if ((rc = flood_gate(r, a)) != DEXCACHE_CONTINUE)
                return rc;
            const dca_apikey_t *k = dca_apikeys_lookup(a->keys, v, len);
            if (k == NULL)
                return refuse(r, a, DCA_R_UNKNOWN_KEY);
            return accept_identity(r, a, "key", k->id, strlen(k->id), k->tier, 0);
        }
    }
    if (a->jwt == NULL)
        return refuse(r, a, DCA_R_MISSING);
    if (w == NULL || w->v == NULL)
        return DEXCACHE_ERROR;
    rc = one_header(r, a, a->jwt_header, &v, &len);
    if (rc == DEXCACHE_ANSWERED)
        return rc;
    /* RFC 6750 2.1: "Bearer" 1*SP b64token; another scheme is no bearer credential at all */
    if (rc != DEXCACHE_CONTINUE || len < 7 || strncasecmp(v, "bearer ", 7) != 0)
        return refuse(r, a, DCA_R_MISSING);
    v += 7;
    len -= 7;
    while (len > 0 && v[0] == ' ')
        v++, len--;
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (len == 0)
        return refuse(r, a, DCA_R_MISSING);
    if ((rc = flood_gate(r, a)) != DEXCACHE_CONTINUE)
        return rc;
    dca_identity_t id;
    int cached = 0;
    dca_reason_t why = dca_jwt_verify(w->v, v, len, (int64_t)time(NULL), &id, &cached);
    if (!cached) /* a token neither the verified nor the refused cache knew: parsed and checked */
        host->metric_add(&dexcache_plugin, r, "jwt_checks", "", 1);
    if (why != DCA_OK)
        return refuse(r, a, why);
    return accept_identity(r, a, "jwt", id.id, id.id_len, id.tier, cached);
}

static int init(const dexcache_host_t *h, char *err, size_t errlen)
{
    if (!DEXCACHE_HOST_HAS(h, req_remove_header) || !DEXCACHE_HOST_HAS(h, req_remove_query) ||
        !DEXCACHE_HOST_HAS(h, metric_add)) {
        snprintf(err, errlen, "the host lacks req_remove_header, req_remove_query or metric_add (ABI 1.2)");
        return DEXCACHE_ERROR;
    }
    host = h;
    return DEXCACHE_CONTINUE;
}

DEXCACHE_PLUGIN_EXPORT const dexcache_plugin_t dexcache_plugin = {
    DEXCACHE_PLUGIN_HEADER,     .name = "auth",
    .version = "1.1.0",         .description = "client authentication: API keys and JWT (HS256/384/512, RS256, ES256)",
    .options = auth_opts,       .init = init,
    .instance_new = inst_new,   .instance_free = inst_free,
    .worker_init = worker_init, .worker_fini = worker_fini,
    .on_request = on_request,
};
