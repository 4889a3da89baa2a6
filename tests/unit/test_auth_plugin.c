/* The auth plugin as a host loads it: dlopen(plugins/auth.so), its exported struct, instance_new on
 * config trees (errors and accepted configs), worker_init, and on_request against fake requests
 * through a fake host table. Checks the answers (401 + RFC 6750 challenge, 403), the identity and
 * tier handed to the limit, and that accepted requests are not answered. The real host's wiring is
 * tested by tests/integration/test_plugin_auth.py. */
#include "cmocka_prelude.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <dexcache/plugin.h>

#include "auth_testsign.h"

/* ---- fake config tree ---- */
struct dexcache_conf {
    const char *key;   /* in a map */
    const char *value; /* scalar; NULL for map/list */
    int is_list;
    struct dexcache_conf *kids[16];
    size_t n;
};
typedef struct dexcache_conf conf_t;

static conf_t pool[256];
static size_t npool;

static conf_t *S(const char *key, const char *value)
{
    conf_t *c = &pool[npool++];
    memset(c, 0, sizeof(*c));
    c->key = key;
    c->value = value;
    return c;
}

static conf_t *M(const char *key, ...)
{
    conf_t *c = S(key, NULL);
    va_list ap;
    va_start(ap, key);
    for (conf_t *k; (k = va_arg(ap, conf_t *)) != NULL;)
        c->kids[c->n++] = k;
    va_end(ap);
    return c;
}

static conf_t *L(const char *key, ...)
{
    conf_t *c = S(key, NULL);
    c->is_list = 1;
    va_list ap;
    va_start(ap, key);
    for (conf_t *k; (k = va_arg(ap, conf_t *)) != NULL;)
        c->kids[c->n++] = k;
    va_end(ap);
    return c;
}

static const dexcache_conf_t *conf_get(const dexcache_conf_t *m, const char *key)
{
    for (size_t i = 0; m != NULL && m->value == NULL && !m->is_list && i < m->n; i++)
        if (strcmp(m->kids[i]->key, key) == 0)
            return m->kids[i];
    return NULL;
}
static size_t conf_len(const dexcache_conf_t *n)
{
    return n == NULL || n->value != NULL ? 0 : n->n;
}
static const dexcache_conf_t *conf_at(const dexcache_conf_t *n, size_t i, const char **key)
{
    if (n == NULL || i >= n->n)
        return NULL;
    if (key != NULL)
        *key = n->is_list ? NULL : n->kids[i]->key;
    return n->kids[i];
}
static int conf_string(const dexcache_conf_t *n, const char **v, size_t *len)
{
    if (n == NULL || n->value == NULL)
        return DEXCACHE_ERROR;
    *v = n->value;
    *len = strlen(n->value);
    return DEXCACHE_CONTINUE;
}
static int conf_int(const dexcache_conf_t *n, int64_t *v)
{
    if (n == NULL || n->value == NULL)
        return DEXCACHE_ERROR;
    *v = atoll(n->value);
    return DEXCACHE_CONTINUE;
}
static int conf_duration_ms(const dexcache_conf_t *n, uint64_t *ms)
{
    if (n == NULL || n->value == NULL)
        return DEXCACHE_ERROR;
    *ms = (uint64_t)atoll(n->value) * 1000; /* "30s" */
    return DEXCACHE_CONTINUE;
}
static int conf_size(const dexcache_conf_t *n, uint64_t *b)
{
    if (n == NULL || n->value == NULL)
        return DEXCACHE_ERROR;
    *b = (uint64_t)atoll(n->value);
    return DEXCACHE_CONTINUE;
}
static int conf_error(const dexcache_conf_t *n, char *err, size_t errlen, const char *fmt, ...)
{
    int k = snprintf(err, errlen, "cfg:%s: ", n && n->key ? n->key : "-");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    va_end(ap);
    return DEXCACHE_ERROR;
}

/* ---- fake request ---- */
struct dexcache_req {
    const char *hname[4], *hvalue[4];
    size_t nh;
    const char *qname, *qvalue;
    int status;
    char message[256];
    char www[512];
    char id[160], tier[64];
    int has_id, has_tier;
};
typedef struct dexcache_req req_t;

static int req_header_at(dexcache_req_t *r, const char *name, size_t nl, size_t idx, const char **v, size_t *len)
{
    for (size_t i = 0; i < r->nh; i++)
        if (strlen(r->hname[i]) == nl && strncasecmp(r->hname[i], name, nl) == 0 && idx-- == 0) {
            *v = r->hvalue[i];
            *len = strlen(*v);
            return DEXCACHE_CONTINUE;
        }
    return DEXCACHE_ERROR;
}
static int req_header(dexcache_req_t *r, const char *name, size_t nl, const char **v, size_t *len)
{
    return req_header_at(r, name, nl, 0, v, len);
}
static int req_query(dexcache_req_t *r, const char *name, size_t nl, const char **v, size_t *len)
{
    if (r->qname == NULL || strlen(r->qname) != nl || memcmp(r->qname, name, nl) != 0)
        return DEXCACHE_ERROR;
    *v = r->qvalue;
    *len = strlen(*v);
    return DEXCACHE_CONTINUE;
}
static int resp_set_header(dexcache_req_t *r, const char *n, size_t nl, const char *v, size_t vl)
{
    if (nl == 16 && strncasecmp(n, "www-authenticate", 16) == 0)
        snprintf(r->www, sizeof(r->www), "%.*s", (int)vl, v);
    return DEXCACHE_CONTINUE;
}
static int respond_error(dexcache_req_t *r, int status, const char *message)
{
    assert_int_equal(r->status, 0); /* once */
    r->status = status;
    snprintf(r->message, sizeof(r->message), "%s", message);
    return DEXCACHE_CONTINUE;
}
static int set_client_id(dexcache_req_t *r, const char *id, size_t len, const char *tier)
{
    assert_true(len > 0 && len <= 128);
    snprintf(r->id, sizeof(r->id), "%.*s", (int)len, id);
    r->has_id = 1;
    r->has_tier = tier != NULL;
    snprintf(r->tier, sizeof(r->tier), "%s", tier ? tier : "");
    return DEXCACHE_CONTINUE;
}
static int req_remove_header(dexcache_req_t *r, const char *name, size_t nl)
{
    for (size_t i = 0; i < r->nh;)
        if (strlen(r->hname[i]) == nl && strncasecmp(r->hname[i], name, nl) == 0) {
            memmove(r->hname + i, r->hname + i + 1, (r->nh - i - 1) * sizeof(r->hname[0]));
            memmove(r->hvalue + i, r->hvalue + i + 1, (r->nh - i - 1) * sizeof(r->hvalue[0]));
            r->nh--;
        } else
            i++;
    return DEXCACHE_CONTINUE;
}
static int req_remove_query(dexcache_req_t *r, const char *name, size_t nl)
{
    if (r->qname != NULL && strlen(r->qname) == nl && memcmp(r->qname, name, nl) == 0)
        r->qname = r->qvalue = NULL;
    return DEXCACHE_CONTINUE;
}
static const char *req_client_ip(dexcache_req_t *r)
{
    return "192.0.2.1";
}
static int metric_add(const dexcache_plugin_t *self, dexcache_req_t *r, const char *event, const char *reason,
                      uint64_t n)
{
    return DEXCACHE_CONTINUE;
}
static void host_log(const dexcache_plugin_t *self, dexcache_req_t *r, int level, const char *fmt, ...) {}

static const dexcache_host_t HOST = {
    .size = sizeof(dexcache_host_t),
    .abi_major = DEXCACHE_PLUGIN_ABI_MAJOR,
    .abi_minor = DEXCACHE_PLUGIN_ABI_MINOR,
    .version = "test",
    .req_header = req_header,
    .req_header_at = req_header_at,
    .req_query = req_query,
    .resp_set_header = resp_set_header,
    .respond_error = respond_error,
    .set_client_id = set_client_id,
    .log = host_log,
    .conf_get = conf_get,
    .conf_len = conf_len,
    .conf_at = conf_at,
    .conf_string = conf_string,
    .conf_int = conf_int,
    .conf_duration_ms = conf_duration_ms,
    .conf_size = conf_size,
    .conf_error = conf_error,
    .req_remove_header = req_remove_header,
    .req_client_ip = req_client_ip,
    .req_remove_query = req_remove_query,
    .metric_add = metric_add,
};

static const dexcache_plugin_t *P;
static ts_t T;
static char testdata[1200];
static const char SECRET[] = "test-only-hmac-secret-0123456789";

typedef struct inst {
    void *instance, *wstate;
} inst_t;

static int make(conf_t *cfg, inst_t *out, char *err, size_t errlen)
{
    dexcache_instance_args_t args = {.size = sizeof(args), .name = "auth", .config = cfg, .config_dir = testdata};
    out->instance = NULL;
    out->wstate = NULL;
    err[0] = '\0';
    if (P->instance_new(&args, &out->instance, err, errlen) != DEXCACHE_CONTINUE)
        return -1;
    assert_int_equal(P->worker_init(out->instance, 0, &out->wstate), DEXCACHE_CONTINUE);
    return 0;
}

static void destroy(inst_t *in)
{
    P->worker_fini(in->instance, 0, in->wstate);
    P->instance_free(in->instance);
}

static int run(inst_t *in, req_t *r)
{
    return P->on_request(r, in->instance, in->wstate);
}

static char *bearer(const char *tok)
{
    static char b[4096];
    snprintf(b, sizeof(b), "Bearer %s", tok);
    return b;
}

static void test_exported_struct(void **state)
{
    assert_int_equal(P->magic, DEXCACHE_PLUGIN_MAGIC);
    assert_int_equal(P->abi_major, DEXCACHE_PLUGIN_ABI_MAJOR);
    assert_int_equal(P->size, sizeof(dexcache_plugin_t));
    assert_string_equal(P->name, "auth");
    assert_non_null(P->on_request);
    assert_null(P->cache_key);
}

static void test_config_errors(void **state)
{
    static const struct {
        int which;
        const char *want;
    } cases[] = {
        {0, "auth needs api_keys, jwt or both"},
        {1, "none is never accepted"},
        {2, "an HS secret must never be a public key"},
        {3, "exactly one of secret, public_key_file, jwks_file"},
        {4, "at least 32 are required"},
        {5, "needs a header or a query parameter name"},
        {6, "is given twice"},
        {7, "nonexistent.pem"},
        {8, "api_keys has no key"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        npool = 0;
        conf_t *cfg = NULL;
        switch (cases[i].which) {
        case 0:
            cfg = M(NULL, M("tiers", S("pro", "pro"), NULL), NULL);
            break;
        case 1:
            cfg = M(NULL, M("jwt", S("alg", "none"), S("secret", SECRET), NULL), NULL);
            break;
        case 2:
            cfg = M(NULL, M("jwt", S("alg", "HS256"), S("public_key_file", "test-rsa2048-public.pem"), NULL), NULL);
            break;
        case 3:
            cfg = M(NULL,
                    M("jwt", S("alg", "RS256"), S("public_key_file", "test-rsa2048-public.pem"),
                      S("jwks_file", "test-jwks.json"), NULL),
                    NULL);
            break;
        case 4:
            cfg = M(NULL, M("jwt", S("alg", "HS256"), S("secret", "short"), NULL), NULL);
            break;
        case 5:
            cfg = M(NULL, M("api_keys", L("keys", S(NULL, "k1"), NULL), NULL), NULL);
            break;
        case 6:
            cfg = M(NULL, M("api_keys", S("header", "x-api-key"), L("keys", S(NULL, "k1"), S(NULL, "k1"), NULL), NULL),
                    NULL);
            break;
        case 7:
            cfg = M(NULL, M("jwt", S("alg", "ES256"), S("public_key_file", "nonexistent.pem"), NULL), NULL);
            break;
        case 8:
            cfg = M(NULL, M("api_keys", S("header", "x-api-key"), NULL), NULL);
            break;
        }
        inst_t in;
        char err[512];
        assert_int_equal(make(cfg, &in, err, sizeof(err)), -1);
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("case %d: \"%s\" lacks \"%s\"", cases[i].which, err, cases[i].want);
    }
}

static void test_jwt_requests(void **state)
{
    npool = 0;
    conf_t *cfg =
        M(NULL,
          M("jwt", S("alg", "ES256"), S("jwks_file", "test-jwks.json"), S("leeway", "30"),
            S("iss", "https://issuer.test"), L("aud", S(NULL, "dexcache"), NULL), S("tier_claim", "plan"), NULL),
          M("tiers", S("pro", "pro"), S("free", "free"), NULL), S("default_tier", "free"), NULL);
    inst_t in;
    char err[512];
    if (make(cfg, &in, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    char claims[256];
    long now = (long)time(NULL);
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"alice\",\"plan\":\"pro\",\"iss\":\"https://issuer.test\",\"aud\":\"dexcache\",\"exp\":%ld}",
             now + 600);
    char *good = ts_token(&T, TS_ES256, "{\"alg\":\"ES256\",\"kid\":\"ec-1\"}", claims, NULL, 0, NULL);
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"bob\",\"iss\":\"https://issuer.test\",\"aud\":\"dexcache\",\"exp\":%ld}", now + 600);
    char *notier = ts_token(&T, TS_ES256, "{\"alg\":\"ES256\"}", claims, NULL, 0, NULL);
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"carol\",\"plan\":\"gold\",\"iss\":\"https://issuer.test\",\"aud\":\"dexcache\",\"exp\":%ld}",
             now + 600);
    char *gold = ts_token(&T, TS_ES256, "{\"alg\":\"ES256\"}", claims, NULL, 0, NULL);
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"dave\",\"iss\":\"https://issuer.test\",\"aud\":\"dexcache\",\"exp\":%ld}", now - 100);
    char *expired = ts_token(&T, TS_ES256, "{\"alg\":\"ES256\"}", claims, NULL, 0, NULL);

    /* accepted, twice (the second from the token cache): identity and mapped tier, no answer */
    for (int i = 0; i < 2; i++) {
        req_t r = {.hname = {"Authorization"}, .hvalue = {bearer(good)}, .nh = 1};
        assert_int_equal(run(&in, &r), DEXCACHE_CONTINUE);
        assert_int_equal(r.status, 0);
        assert_string_equal(r.id, "jwt:alice");
        assert_string_equal(r.tier, "pro");
        assert_int_equal(r.nh, 0); /* the token does not go on */
    }
    req_t r1 = {.hname = {"authorization"}, .hvalue = {bearer(notier)}, .nh = 1};
    assert_int_equal(run(&in, &r1), DEXCACHE_CONTINUE);
    assert_string_equal(r1.id, "jwt:bob");
    assert_string_equal(r1.tier, "free"); /* default_tier */
    /* a tier the map does not admit: 403, no identity */
    req_t r2 = {.hname = {"authorization"}, .hvalue = {bearer(gold)}, .nh = 1};
    assert_int_equal(run(&in, &r2), DEXCACHE_ANSWERED);
    assert_int_equal(r2.status, 403);
    assert_int_equal(r2.has_id, 0);
    assert_string_equal(r2.www, "");
    /* expired: 401 with the RFC 6750 challenge */
    req_t r3 = {.hname = {"authorization"}, .hvalue = {bearer(expired)}, .nh = 1};
    assert_int_equal(run(&in, &r3), DEXCACHE_ANSWERED);
    assert_int_equal(r3.status, 401);
    assert_string_equal(
        r3.www, "Bearer realm=\"dexcache\", error=\"invalid_token\", error_description=\"the token has expired\"");
    assert_non_null(strstr(r3.message, "(expired)"));
    assert_int_equal(r3.has_id, 0);
    /* no credential, another scheme, an empty bearer: 401 without an error code */
    static const char *const none[] = {NULL, "Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Bearer ", "Bearer"};
    for (size_t i = 0; i < 4; i++) {
        req_t r = {.hname = {"authorization"}, .hvalue = {none[i]}, .nh = none[i] != NULL};
        assert_int_equal(run(&in, &r), DEXCACHE_ANSWERED);
        assert_int_equal(r.status, 401);
        assert_string_equal(r.www, "Bearer realm=\"dexcache\"");
    }
    /* two Authorization headers, even both valid: malformed */
    req_t r4 = {.hname = {"authorization", "authorization"}, .hvalue = {bearer(good), bearer(good)}, .nh = 2};
    char twice[4096];
    strcpy(twice, r4.hvalue[0]);
    r4.hvalue[0] = twice;
    assert_int_equal(run(&in, &r4), DEXCACHE_ANSWERED);
    assert_int_equal(r4.status, 401);
    assert_non_null(strstr(r4.www, "error=\"invalid_token\""));
    /* scheme case-insensitive, extra spaces */
    char loose[4096];
    snprintf(loose, sizeof(loose), "bEaReR   %s  ", good);
    req_t r5 = {.hname = {"authorization"}, .hvalue = {loose}, .nh = 1};
    assert_int_equal(run(&in, &r5), DEXCACHE_CONTINUE);
    assert_string_equal(r5.id, "jwt:alice");
    free(good);
    free(notier);
    free(gold);
    free(expired);
    destroy(&in);
}

static void test_api_key_requests(void **state)
{
    npool = 0;
    conf_t *cfg =
        M(NULL,
          M("api_keys", S("header", "X-Api-Key"), S("query", "api_key"),
            L("keys", S(NULL, "k-plain"), M(NULL, S("key", "k-pro"), S("id", "app2"), S("tier", "pro"), NULL), NULL),
            NULL),
          M("jwt", S("alg", "HS256"), S("secret", SECRET), NULL), NULL);
    inst_t in;
    char err[512];
    if (make(cfg, &in, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    req_t r1 = {.hname = {"x-api-key"}, .hvalue = {"k-pro"}, .nh = 1};
    assert_int_equal(run(&in, &r1), DEXCACHE_CONTINUE);
    assert_string_equal(r1.id, "key:app2");
    assert_string_equal(r1.tier, "pro");
    assert_int_equal(r1.nh, 0);
    req_t r2 = {.qname = "api_key", .qvalue = "k-plain"};
    assert_int_equal(run(&in, &r2), DEXCACHE_CONTINUE);
    assert_memory_equal(r2.id, "key:key-", 8);
    assert_int_equal(r2.has_tier, 0);
    /* an unknown key decides alone, even next to a valid token */
    char *tok = ts_token(&T, TS_HS256, "{\"alg\":\"HS256\"}", "{\"sub\":\"eve\"}", SECRET, strlen(SECRET), NULL);
    req_t r3 = {.hname = {"x-api-key", "authorization"}, .hvalue = {"k-nope", bearer(tok)}, .nh = 2};
    assert_int_equal(run(&in, &r3), DEXCACHE_ANSWERED);
    assert_int_equal(r3.status, 401);
    assert_non_null(strstr(r3.www, "the API key is not valid"));
    assert_int_equal(r3.nh, 2); /* a refused request goes nowhere: nothing to strip */
    /* no key: the token is judged */
    req_t r4 = {.hname = {"authorization"}, .hvalue = {bearer(tok)}, .nh = 1};
    assert_int_equal(run(&in, &r4), DEXCACHE_CONTINUE);
    assert_string_equal(r4.id, "jwt:eve");
    assert_int_equal(r4.nh, 0);
    /* a token signed with the RS256 key under an HS256 config */
    char *rs = ts_token(&T, TS_RS256, "{\"alg\":\"RS256\"}", "{\"sub\":\"eve\"}", NULL, 0, NULL);
    req_t r5 = {.hname = {"authorization"}, .hvalue = {bearer(rs)}, .nh = 1};
    assert_int_equal(run(&in, &r5), DEXCACHE_ANSWERED);
    assert_non_null(strstr(r5.message, "(bad_alg)"));
    free(tok);
    free(rs);
    destroy(&in);
}

static int setup(void **state)
{
    const char *src = getenv("DC_SOURCE_DIR");
    ts_init(&T, src ? src : ".");
    snprintf(testdata, sizeof(testdata), "%s", T.dir);
    void *h = dlopen(DC_AUTH_SO, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        fprintf(stderr, "%s\n", dlerror());
        return -1;
    }
    P = dlsym(h, DEXCACHE_PLUGIN_SYMBOL);
    if (P == NULL)
        return -1;
    char err[128];
    return P->init(&HOST, err, sizeof(err)) == DEXCACHE_CONTINUE ? 0 : -1;
}

static int teardown(void **state)
{
    ts_fini(&T);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exported_struct),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_jwt_requests),
        cmocka_unit_test(test_api_key_requests),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
