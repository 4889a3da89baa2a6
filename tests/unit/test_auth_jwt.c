/* The auth plugin's JWT checks (lua-free-plugins/auth/jwt.c, jwks.c, tcache.c): every algorithm with
 * real keys, every refusal with its reason, strict base64url, the per-worker token cache. */
#include "cmocka_prelude.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jwt.h"
#include "auth_testsign.h"

#define NOW 1700000000
static ts_t T;
static const char SECRET[] = "test-only-hmac-secret-0123456789-0123456789-0123456789-012345678";

typedef struct pair {
    dca_jwt_t *j;
    dca_jwt_verifier_t *v;
} pair_t;

static pair_t mk(dca_keyset_t *ks, const dca_jwt_conf_t *conf)
{
    dca_jwt_conf_t def = {0};
    char err[256] = "";
    pair_t p;
    p.j = dca_jwt_new(conf ? conf : &def, ks, err, sizeof(err));
    if (p.j == NULL)
        fail_msg("dca_jwt_new: %s", err);
    p.v = dca_jwt_verifier_new(p.j, err, sizeof(err));
    if (p.v == NULL)
        fail_msg("dca_jwt_verifier_new: %s", err);
    return p;
}

static void pair_free(pair_t *p)
{
    dca_jwt_verifier_free(p->v);
    dca_jwt_free(p->j);
}

static dca_keyset_t *hs(dca_alg_t alg)
{
    dca_keyset_t *ks = NULL;
    char err[256];
    assert_int_equal(dca_keyset_from_secret(alg, SECRET, strlen(SECRET), &ks, err, sizeof(err)), 0);
    return ks;
}

static dca_keyset_t *pem(dca_alg_t alg, const char *file)
{
    dca_keyset_t *ks = NULL;
    char err[256], p[1200];
    ts_path(&T, file, p, sizeof(p));
    if (dca_keyset_from_pem_file(alg, p, NULL, &ks, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    return ks;
}

static dca_keyset_t *jwks(dca_alg_t alg)
{
    dca_keyset_t *ks = NULL;
    char err[256], p[1200];
    ts_path(&T, "test-jwks.json", p, sizeof(p));
    if (dca_keyset_from_jwks_file(alg, p, &ks, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    return ks;
}

static dca_reason_t verify(pair_t *p, const char *tok, dca_identity_t *id)
{
    dca_identity_t scratch;
    return dca_jwt_verify(p->v, tok, strlen(tok), NOW, id ? id : &scratch, NULL);
}

#define CLAIMS "{\"sub\":\"user-1\",\"exp\":1700000100,\"iss\":\"https://issuer.test\",\"aud\":\"dexcache\"}"

static void test_b64url(void **state)
{
    unsigned char out[16];
    /* RFC 4648 section 10 vectors (no padding) */
    assert_int_equal(dca_b64url_decode("", 0, out, sizeof(out)), 0);
    assert_int_equal(dca_b64url_decode("Zg", 2, out, sizeof(out)), 1);
    assert_memory_equal(out, "f", 1);
    assert_int_equal(dca_b64url_decode("Zm8", 3, out, sizeof(out)), 2);
    assert_memory_equal(out, "fo", 2);
    assert_int_equal(dca_b64url_decode("Zm9vYmFy", 8, out, sizeof(out)), 6);
    assert_memory_equal(out, "foobar", 6);
    assert_int_equal(dca_b64url_decode("-_-_", 4, out, sizeof(out)), 3);
    assert_memory_equal(out, "\xfb\xff\xbf", 3);
    /* padding, the standard alphabet, whitespace, a 4n+1 length, non-zero unused bits, overflow */
    assert_int_equal(dca_b64url_decode("Zg==", 4, out, sizeof(out)), -1);
    assert_int_equal(dca_b64url_decode("+/+/", 4, out, sizeof(out)), -1);
    assert_int_equal(dca_b64url_decode("Zm9 v", 5, out, sizeof(out)), -1);
    assert_int_equal(dca_b64url_decode("Zm9vY", 5, out, sizeof(out)), -1);
    assert_int_equal(dca_b64url_decode("Zh", 2, out, sizeof(out)), -1);
    assert_int_equal(dca_b64url_decode("Zm9", 3, out, sizeof(out)), -1);
    assert_int_equal(dca_b64url_decode("Zm\0v", 4, out, sizeof(out)), -1);
    assert_int_equal(dca_b64url_decode("Zm9vYmFy", 8, out, 5), -1);
}

static void test_alg_names(void **state)
{
    assert_int_equal(dca_alg_parse("HS256", 5), DCA_ALG_HS256);
    assert_int_equal(dca_alg_parse("ES256", 5), DCA_ALG_ES256);
    assert_int_equal(dca_alg_parse("none", 4), DCA_ALG_NONE);
    assert_int_equal(dca_alg_parse("hs256", 5), DCA_ALG_NONE);
    assert_int_equal(dca_alg_parse("HS25", 4), DCA_ALG_NONE);
    assert_string_equal(dca_reason_name(DCA_R_EXPIRED), "expired");
    assert_string_equal(dca_reason_name(DCA_R_NOT_YET_VALID), "not_yet_valid");
    assert_string_equal(dca_reason_name(DCA_R_BAD_SIGNATURE), "bad_signature");
    assert_string_equal(dca_reason_name(DCA_R_BAD_ALG), "bad_alg");
    assert_string_equal(dca_reason_name(DCA_R_MALFORMED), "malformed");
    assert_string_equal(dca_reason_name(DCA_R_WRONG_ISS), "wrong_iss");
    assert_string_equal(dca_reason_name(DCA_R_WRONG_AUD), "wrong_aud");
    assert_string_equal(dca_reason_name(DCA_R_MISSING_CLAIM), "missing_claim");
    /* every description can stand inside an RFC 6750 quoted error_description */
    for (int r = 0; r < DCA_R__COUNT; r++)
        assert_null(strpbrk(dca_reason_desc((dca_reason_t)r), "\"\\\r\n"));
}

/* each algorithm accepts its own token and sets identity, tier and expiry */
static void one_alg(dca_alg_t alg, dca_keyset_t *ks, ts_how_t how, mbedtls_pk_context *key, const char *kid)
{
    const char *tier = "tier";
    dca_jwt_conf_t c = {.tier_claim = tier};
    pair_t p = mk(ks, &c);
    char header[128];
    if (kid != NULL)
        snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", dca_alg_name(alg), kid);
    else
        snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", dca_alg_name(alg));
    char *tok = ts_token(&T, how, header, "{\"sub\":\"alice\",\"tier\":\"pro\",\"exp\":1700000100.5}", SECRET,
                         strlen(SECRET), key);
    dca_identity_t id;
    int cached = -1;
    assert_int_equal(dca_jwt_verify(p.v, tok, strlen(tok), NOW, &id, &cached), DCA_OK);
    assert_int_equal(cached, 0);
    assert_string_equal(id.id, "alice");
    assert_int_equal(id.id_len, 5);
    assert_string_equal(id.tier, "pro");
    assert_int_equal(id.expires, 1700000101);
    free(tok);
    pair_free(&p);
}

static void test_each_alg(void **state)
{
    one_alg(DCA_ALG_HS256, hs(DCA_ALG_HS256), TS_HS256, NULL, NULL);
    one_alg(DCA_ALG_HS384, hs(DCA_ALG_HS384), TS_HS384, NULL, NULL);
    one_alg(DCA_ALG_HS512, hs(DCA_ALG_HS512), TS_HS512, NULL, NULL);
    one_alg(DCA_ALG_RS256, pem(DCA_ALG_RS256, "test-rsa2048-public.pem"), TS_RS256, NULL, NULL);
    one_alg(DCA_ALG_RS256, pem(DCA_ALG_RS256, "test-rsa2048-public.pem"), TS_RS256, NULL, "any-kid");
    one_alg(DCA_ALG_ES256, pem(DCA_ALG_ES256, "test-ec-p256-public.pem"), TS_ES256, NULL, NULL);
    one_alg(DCA_ALG_RS256, jwks(DCA_ALG_RS256), TS_RS256, NULL, "rsa-a");
    one_alg(DCA_ALG_RS256, jwks(DCA_ALG_RS256), TS_RS256, &T.rsa_b, "rsa-b");
    one_alg(DCA_ALG_ES256, jwks(DCA_ALG_ES256), TS_ES256, NULL, "ec-1");
    one_alg(DCA_ALG_ES256, jwks(DCA_ALG_ES256), TS_ES256, NULL, NULL); /* one EC key in the set */
}

static void test_kid_selection(void **state)
{
    pair_t p = mk(jwks(DCA_ALG_RS256), NULL);
    /* signed by key b but naming key a; naming no key among two; naming an unknown key */
    char *t1 = ts_token(&T, TS_RS256, "{\"alg\":\"RS256\",\"kid\":\"rsa-a\"}", CLAIMS, NULL, 0, &T.rsa_b);
    char *t2 = ts_token(&T, TS_RS256, "{\"alg\":\"RS256\"}", CLAIMS, NULL, 0, NULL);
    char *t3 = ts_token(&T, TS_RS256, "{\"alg\":\"RS256\",\"kid\":\"rsa-c\"}", CLAIMS, NULL, 0, NULL);
    char *t4 = ts_token(&T, TS_RS256, "{\"alg\":\"RS256\",\"kid\":7}", CLAIMS, NULL, 0, NULL);
    assert_int_equal(verify(&p, t1, NULL), DCA_R_BAD_SIGNATURE);
    assert_int_equal(verify(&p, t2, NULL), DCA_R_UNKNOWN_KID);
    assert_int_equal(verify(&p, t3, NULL), DCA_R_UNKNOWN_KID);
    assert_int_equal(verify(&p, t4, NULL), DCA_R_MALFORMED);
    free(t1);
    free(t2);
    free(t3);
    free(t4);
    pair_free(&p);
}

static void test_time_claims(void **state)
{
    dca_jwt_conf_t c = {.leeway = 30};
    pair_t p = mk(hs(DCA_ALG_HS256), &c);
    static const struct {
        const char *claims;
        dca_reason_t want;
    } cases[] = {
        {"{\"sub\":\"a\",\"exp\":1700000000}", DCA_OK},              /* within the leeway */
        {"{\"sub\":\"a\",\"exp\":1699999971}", DCA_OK},              /* now - leeway < exp */
        {"{\"sub\":\"a\",\"exp\":1699999970}", DCA_R_EXPIRED},       /* now - leeway == exp */
        {"{\"sub\":\"a\",\"exp\":1600000000}", DCA_R_EXPIRED},       /* long gone */
        {"{\"sub\":\"a\",\"nbf\":1700000030}", DCA_OK},              /* within the leeway */
        {"{\"sub\":\"a\",\"nbf\":1700000031}", DCA_R_NOT_YET_VALID}, /* beyond it */
        {"{\"sub\":\"a\",\"exp\":\"1700000100\"}", DCA_R_MALFORMED}, /* a string is no NumericDate */
        {"{\"sub\":\"a\",\"exp\":1e999}", DCA_R_MALFORMED},          /* infinite */
        {"{\"sub\":\"a\",\"nbf\":null}", DCA_R_MALFORMED},           /* null */
        {"{\"sub\":\"a\"}", DCA_OK},                                 /* neither: accepted */
        {"{\"exp\":1700000100}", DCA_R_MISSING_CLAIM},               /* no identity */
        {"{\"sub\":\"\",\"exp\":1700000100}", DCA_R_MALFORMED},      /* empty identity */
        {"{\"sub\":7,\"exp\":1700000100}", DCA_R_MALFORMED},         /* identity not a string */
        {"{\"sub\":\"a\\nb\",\"exp\":1700000100}", DCA_R_MALFORMED}, /* control character */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *tok = ts_token(&T, TS_HS256, "{\"alg\":\"HS256\"}", cases[i].claims, SECRET, strlen(SECRET), NULL);
        dca_reason_t r = verify(&p, tok, NULL);
        if (r != cases[i].want)
            fail_msg("%s: %s, expected %s", cases[i].claims, dca_reason_name(r), dca_reason_name(cases[i].want));
        free(tok);
    }
    pair_free(&p);
}

static void test_iss_aud_required(void **state)
{
    const char *aud[] = {"dexcache", "other"};
    const char *req[] = {"scope"};
    dca_jwt_conf_t c = {
        .iss = "https://issuer.test", .aud = aud, .naud = 2, .required = req, .nrequired = 1, .identity_claim = "uid"};
    pair_t p = mk(hs(DCA_ALG_HS256), &c);
    static const struct {
        const char *claims;
        dca_reason_t want;
    } cases[] = {
        {"{\"uid\":\"u\",\"iss\":\"https://issuer.test\",\"aud\":\"dexcache\",\"scope\":1}", DCA_OK},
        {"{\"uid\":\"u\",\"iss\":\"https://issuer.test\",\"aud\":[\"x\",\"other\"],\"scope\":1}", DCA_OK},
        {"{\"uid\":\"u\",\"iss\":\"https://evil.test\",\"aud\":\"dexcache\",\"scope\":1}", DCA_R_WRONG_ISS},
        {"{\"uid\":\"u\",\"aud\":\"dexcache\",\"scope\":1}", DCA_R_WRONG_ISS},
        {"{\"uid\":\"u\",\"iss\":\"https://issuer.test\",\"aud\":\"dexcach\",\"scope\":1}", DCA_R_WRONG_AUD},
        {"{\"uid\":\"u\",\"iss\":\"https://issuer.test\",\"aud\":[\"x\",7],\"scope\":1}", DCA_R_WRONG_AUD},
        {"{\"uid\":\"u\",\"iss\":\"https://issuer.test\",\"scope\":1}", DCA_R_WRONG_AUD},
        {"{\"uid\":\"u\",\"iss\":\"https://issuer.test\",\"aud\":\"dexcache\"}", DCA_R_MISSING_CLAIM},
        {"{\"sub\":\"u\",\"iss\":\"https://issuer.test\",\"aud\":\"dexcache\",\"scope\":1}", DCA_R_MISSING_CLAIM},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *tok = ts_token(&T, TS_HS256, "{\"alg\":\"HS256\"}", cases[i].claims, SECRET, strlen(SECRET), NULL);
        dca_reason_t r = verify(&p, tok, NULL);
        if (r != cases[i].want)
            fail_msg("%s: %s, expected %s", cases[i].claims, dca_reason_name(r), dca_reason_name(cases[i].want));
        free(tok);
    }
    pair_free(&p);
}

/* flips one character of part `part` (0 header, 1 payload, 2 signature) of a valid token */
static char *tamper(const char *tok, int part)
{
    char *t = strdup(tok), *p = t;
    for (int i = 0; i < part; i++)
        p = strchr(p, '.') + 1;
    p[part == 2 ? 5 : 2] = p[part == 2 ? 5 : 2] == 'A' ? 'B' : 'A';
    return t;
}

static void test_tampering(void **state)
{
    static const struct {
        dca_alg_t alg;
        ts_how_t how;
        const char *file;
    } algs[] = {{DCA_ALG_HS256, TS_HS256, NULL},
                {DCA_ALG_RS256, TS_RS256, "test-rsa2048-public.pem"},
                {DCA_ALG_ES256, TS_ES256, "test-ec-p256-public.pem"}};
    for (size_t i = 0; i < 3; i++) {
        pair_t p = mk(algs[i].file ? pem(algs[i].alg, algs[i].file) : hs(algs[i].alg), NULL);
        char header[64];
        snprintf(header, sizeof(header), "{\"alg\":\"%s\"}", dca_alg_name(algs[i].alg));
        char *tok = ts_token(&T, algs[i].how, header, CLAIMS, SECRET, strlen(SECRET), NULL);
        char *t1 = tamper(tok, 1), *t2 = tamper(tok, 2);
        assert_int_equal(verify(&p, t1, NULL), DCA_R_BAD_SIGNATURE);
        assert_int_equal(verify(&p, t2, NULL), DCA_R_BAD_SIGNATURE);
        /* a signature one byte short, and one byte long */
        char *t3 = strdup(tok);
        t3[strlen(t3) - 2] = '\0';
        assert_int_not_equal(verify(&p, t3, NULL), DCA_OK);
        assert_int_equal(verify(&p, tok, NULL), DCA_OK);
        free(tok);
        free(t1);
        free(t2);
        free(t3);
        pair_free(&p);
    }
}

static void test_alg_confusion(void **state)
{
    /* RS256 configured: alg none (with and without a signature), HS256 signed with the RSA public
     * key's PEM text as the secret, ES256 */
    pair_t p = mk(pem(DCA_ALG_RS256, "test-rsa2048-public.pem"), NULL);
    char path[1200], pub[2048];
    ts_path(&T, "test-rsa2048-public.pem", path, sizeof(path));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t publen = fread(pub, 1, sizeof(pub), f);
    fclose(f);
    char *hs_pub = ts_token(&T, TS_HS256, "{\"alg\":\"HS256\"}", CLAIMS, pub, publen, NULL);
    char *none1 = ts_token(&T, TS_UNSIGNED, "{\"alg\":\"none\"}", CLAIMS, NULL, 0, NULL);
    char *none2 = ts_token(&T, TS_HS256, "{\"alg\":\"none\"}", CLAIMS, SECRET, strlen(SECRET), NULL);
    char *none3 = ts_token(&T, TS_RS256, "{\"alg\":\"None\"}", CLAIMS, NULL, 0, NULL);
    char *es = ts_token(&T, TS_ES256, "{\"alg\":\"ES256\"}", CLAIMS, NULL, 0, NULL);
    char *noalg = ts_token(&T, TS_RS256, "{\"typ\":\"JWT\"}", CLAIMS, NULL, 0, NULL);
    assert_int_equal(verify(&p, hs_pub, NULL), DCA_R_BAD_ALG);
    assert_int_equal(verify(&p, none1, NULL), DCA_R_MALFORMED); /* "x.y." has an empty third part */
    assert_int_equal(verify(&p, none2, NULL), DCA_R_BAD_ALG);
    assert_int_equal(verify(&p, none3, NULL), DCA_R_BAD_ALG);
    assert_int_equal(verify(&p, es, NULL), DCA_R_BAD_ALG);
    assert_int_equal(verify(&p, noalg, NULL), DCA_R_MALFORMED);
    pair_free(&p);
    /* HS256 configured: an RS256 token; and the key-set loaders never make an HS key of a public key */
    pair_t q = mk(hs(DCA_ALG_HS256), NULL);
    char *rs = ts_token(&T, TS_RS256, "{\"alg\":\"RS256\"}", CLAIMS, NULL, 0, NULL);
    assert_int_equal(verify(&q, rs, NULL), DCA_R_BAD_ALG);
    assert_int_equal(verify(&q, none1, NULL), DCA_R_MALFORMED);
    assert_int_equal(verify(&q, none2, NULL), DCA_R_BAD_ALG);
    pair_free(&q);
    dca_keyset_t *ks = NULL;
    char err[256];
    assert_int_equal(dca_keyset_from_pem_file(DCA_ALG_HS256, path, NULL, &ks, err, sizeof(err)), -1);
    ts_path(&T, "test-jwks.json", path, sizeof(path));
    assert_int_equal(dca_keyset_from_jwks_file(DCA_ALG_HS256, path, &ks, err, sizeof(err)), -1);
    assert_int_equal(dca_keyset_from_secret(DCA_ALG_RS256, SECRET, strlen(SECRET), &ks, err, sizeof(err)), -1);
    assert_int_equal(dca_keyset_from_secret(DCA_ALG_NONE, SECRET, strlen(SECRET), &ks, err, sizeof(err)), -1);
    /* an ES256 config given an RSA key, an RS256 config given the EC key */
    ts_path(&T, "test-rsa2048-public.pem", path, sizeof(path));
    assert_int_equal(dca_keyset_from_pem_file(DCA_ALG_ES256, path, NULL, &ks, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "P-256"));
    ts_path(&T, "test-ec-p256-public.pem", path, sizeof(path));
    assert_int_equal(dca_keyset_from_pem_file(DCA_ALG_RS256, path, NULL, &ks, err, sizeof(err)), -1);
    /* HMAC secrets shorter than the hash */
    assert_int_equal(dca_keyset_from_secret(DCA_ALG_HS256, SECRET, 31, &ks, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "at least 32"));
    assert_int_equal(dca_keyset_from_secret(DCA_ALG_HS512, SECRET, 63, &ks, err, sizeof(err)), -1);
    assert_int_equal(dca_keyset_from_secret(DCA_ALG_HS256, SECRET, 32, &ks, err, sizeof(err)), 0);
    dca_keyset_free(ks);
    free(hs_pub);
    free(none1);
    free(none2);
    free(none3);
    free(es);
    free(noalg);
    free(rs);
}

/* ES256 signatures are R||S; a DER signature from the same key is refused */
static void test_es256_der_refused(void **state)
{
    pair_t p = mk(pem(DCA_ALG_ES256, "test-ec-p256-public.pem"), NULL);
    char *der = ts_token(&T, TS_ES256_DER, "{\"alg\":\"ES256\"}", CLAIMS, NULL, 0, NULL);
    assert_int_equal(verify(&p, der, NULL), DCA_R_BAD_SIGNATURE);
    /* r = 0 and s = 0 */
    char zero[512];
    char *good = ts_token(&T, TS_ES256, "{\"alg\":\"ES256\"}", CLAIMS, NULL, 0, NULL);
    char *d2 = strrchr(good, '.');
    memcpy(zero, good, (size_t)(d2 - good) + 1);
    memset(zero + (d2 - good) + 1, 'A', 86);
    zero[(d2 - good) + 1 + 86] = '\0';
    assert_int_equal(verify(&p, zero, NULL), DCA_R_BAD_SIGNATURE);
    free(der);
    free(good);
    pair_free(&p);
}

static void test_malformed(void **state)
{
    dca_jwt_conf_t c = {.max_token = 4096};
    pair_t p = mk(hs(DCA_ALG_HS256), &c);
    char *good = ts_token(&T, TS_HS256, "{\"alg\":\"HS256\"}", CLAIMS, SECRET, strlen(SECRET), NULL);
    assert_int_equal(verify(&p, good, NULL), DCA_OK);
    static const char *const bad[] = {
        "abc",
        "abc.def",
        "a.b.c.d",
        "..",
        "a..c",
        ".b.c",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "eyJhbGciOiJIUzI1NiJ9==.e30.AAAA",
        "eyJhbGciOiJIUzI1NiJ9.e30=.AAAA",
        "eyJhbGciOiJIUzI1NiJ9.e+30.AAAA",
        "eyJhbGciOiJIUzI1NiJ9 .e30.AAAA",
        "e.e30.AAAA",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dca_reason_t r = verify(&p, bad[i], NULL);
        if (r != DCA_R_MALFORMED)
            fail_msg("%s: %s", bad[i], dca_reason_name(r));
    }
    /* a bad character in each part of a valid token */
    for (int part = 0; part < 3; part++) {
        char *t = strdup(good), *q = t;
        for (int i = 0; i < part; i++)
            q = strchr(q, '.') + 1;
        q[1] = '/';
        assert_int_equal(verify(&p, t, NULL), DCA_R_MALFORMED);
        free(t);
    }
    /* headers that are not one flat JSON object we can trust */
    static const char *const headers[] = {
        "[\"HS256\"]",
        "{\"alg\":\"HS256\"} x",
        "{\"alg\":\"HS256\",\"alg\":\"none\"}",
        "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
        "{\"alg\":\"HS256\",\"b64\":false}",
        "{\"alg\":\"HS256\"",
        "{\"alg\":HS256}",
        "{\"alg\":\"HS256\"}\n{}",
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        char *tok = ts_token(&T, TS_HS256, headers[i], CLAIMS, SECRET, strlen(SECRET), NULL);
        dca_reason_t r = verify(&p, tok, NULL);
        if (r != DCA_R_MALFORMED)
            fail_msg("header %s: %s", headers[i], dca_reason_name(r));
        free(tok);
    }
    /* claims: not an object, duplicated sub, control bytes (outside and inside strings), trailing bytes */
    static const char *const claims[] = {"[1]", "{\"sub\":\"a\",\"sub\":\"b\"}", "{\"sub\":\"a\"}\x01",
                                         "\x01{\"sub\":\"a\"}", "{\"sub\":\"a\x01\"}", "\"a\"", "{}{}",
                                         /* an escaped NUL would end the string at "alice" */
                                         "{\"sub\":\"alice\\u0000bob\"}",
                                         "{\"sub\":\"a\",\"iss\":\"https://issuer.test\\u0000evil\"}"};
    for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
        char *tok = ts_token(&T, TS_HS256, "{\"alg\":\"HS256\"}", claims[i], SECRET, strlen(SECRET), NULL);
        dca_reason_t r = verify(&p, tok, NULL);
        if (r != DCA_R_MALFORMED)
            fail_msg("claims %s: %s", claims[i], dca_reason_name(r));
        free(tok);
    }
    /* a huge token: refused before any decoding, whatever it holds */
    char big[8192];
    memset(big, 'A', sizeof(big));
    size_t n = strlen(good);
    memcpy(big, good, n);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(dca_jwt_verify(p.v, big, 4097, NOW, &(dca_identity_t){0}, NULL), DCA_R_MALFORMED);
    assert_int_equal(dca_jwt_verify(p.v, good, 0, NOW, &(dca_identity_t){0}, NULL), DCA_R_MISSING);
    free(good);
    pair_free(&p);
}

static void test_jwks_loading(void **state)
{
    dca_keyset_t *ks = NULL;
    char err[256];
    static const char *const bad[] = {
        "[]",
        "{\"keys\":{}}",
        "{\"keys\":[]}",
        "{\"keys\":[1]}",
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}",
        "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}", /* not a valid RSA key */
        "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQ==\",\"e\":\"AQAB\"}]}",
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (dca_keyset_from_jwks(DCA_ALG_RS256, bad[i], strlen(bad[i]), "jwks", &ks, err, sizeof(err)) != -1)
            fail_msg("accepted %s", bad[i]);
    /* an EC point not on the curve */
    const char *off =
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
        "\"y\":\"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}]}";
    assert_int_equal(dca_keyset_from_jwks(DCA_ALG_ES256, off, strlen(off), "jwks", &ks, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "P-256"));
    /* the test set: two RSA keys for RS256, one EC key for ES256; duplicate kids refused */
    char path[1200];
    ts_path(&T, "test-jwks.json", path, sizeof(path));
    assert_int_equal(dca_keyset_from_jwks_file(DCA_ALG_RS256, path, &ks, err, sizeof(err)), 0);
    assert_int_equal(ks->nkeys, 2);
    assert_string_equal(ks->keys[1].kid, "rsa-b");
    assert_null(dca_keyset_select(ks, NULL, 0));
    assert_ptr_equal(dca_keyset_select(ks, "rsa-b", 5), ks->keys + 1);
    assert_null(dca_keyset_select(ks, "rsa-", 4));
    dca_keyset_free(ks);
    assert_int_equal(dca_keyset_from_jwks_file(DCA_ALG_ES256, path, &ks, err, sizeof(err)), 0);
    assert_int_equal(ks->nkeys, 1);
    dca_keyset_free(ks);
    assert_int_equal(dca_keyset_from_jwks_file(DCA_ALG_ES256, "/nonexistent/jwks.json", &ks, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/jwks.json"));
}

/* a repeated token is answered from the cache until it expires; the cache stays bounded */
static void test_token_cache(void **state)
{
    dca_jwt_conf_t c = {.leeway = 5, .cache_entries = 16};
    pair_t p = mk(pem(DCA_ALG_ES256, "test-ec-p256-public.pem"), &c);
    char *tok = ts_token(&T, TS_ES256, "{\"alg\":\"ES256\"}", "{\"sub\":\"bob\",\"exp\":1700000010}", NULL, 0, NULL);
    dca_identity_t id;
    int cached;
    assert_int_equal(dca_jwt_verify(p.v, tok, strlen(tok), NOW, &id, &cached), DCA_OK);
    assert_int_equal(cached, 0);
    assert_int_equal(id.expires, 1700000015);
    assert_int_equal(dca_jwt_verify(p.v, tok, strlen(tok), NOW + 14, &id, &cached), DCA_OK);
    assert_int_equal(cached, 1);
    assert_string_equal(id.id, "bob");
    /* at exp + leeway the entry is dead and the full check refuses */
    assert_int_equal(dca_jwt_verify(p.v, tok, strlen(tok), NOW + 15, &id, &cached), DCA_R_EXPIRED);
    assert_int_equal(cached, 0);
    /* a refused token is refused again from the refusal cache, never accepted */
    char *bad = tamper(tok, 2);
    assert_int_equal(dca_jwt_verify(p.v, bad, strlen(bad), NOW, &id, &cached), DCA_R_BAD_SIGNATURE);
    assert_int_equal(cached, 0);
    assert_int_equal(dca_jwt_verify(p.v, bad, strlen(bad), NOW, &id, &cached), DCA_R_BAD_SIGNATURE);
    assert_int_equal(cached, 1);
    /* ... the expired one too; but not_yet_valid is checked again, and passes once its time comes */
    assert_int_equal(dca_jwt_verify(p.v, tok, strlen(tok), NOW + 16, &id, &cached), DCA_R_EXPIRED);
    assert_int_equal(cached, 1);
    char *early =
        ts_token(&T, TS_ES256, "{\"alg\":\"ES256\"}", "{\"sub\":\"early\",\"nbf\":1700000100}", NULL, 0, NULL);
    assert_int_equal(dca_jwt_verify(p.v, early, strlen(early), NOW, &id, &cached), DCA_R_NOT_YET_VALID);
    assert_int_equal(dca_jwt_verify(p.v, early, strlen(early), NOW, &id, &cached), DCA_R_NOT_YET_VALID);
    assert_int_equal(cached, 0);
    assert_int_equal(dca_jwt_verify(p.v, early, strlen(early), NOW + 95, &id, &cached), DCA_OK);
    assert_string_equal(id.id, "early");
    free(early);
    /* 100 distinct tokens through a 16-entry cache */
    for (int i = 0; i < 100; i++) {
        char claims[96];
        snprintf(claims, sizeof(claims), "{\"sub\":\"u%d\",\"exp\":1700000100}", i);
        char *t = ts_token(&T, TS_ES256, "{\"alg\":\"ES256\"}", claims, NULL, 0, NULL);
        assert_int_equal(dca_jwt_verify(p.v, t, strlen(t), NOW, &id, &cached), DCA_OK);
        assert_int_equal(dca_jwt_verify(p.v, t, strlen(t), NOW, &id, &cached), DCA_OK);
        assert_int_equal(cached, 1); /* the one just inserted is there */
        char want[16];
        snprintf(want, sizeof(want), "u%d", i);
        assert_string_equal(id.id, want);
        free(t);
    }
    dca_tcache_stats_t st;
    dca_jwt_verifier_stats(p.v, &st);
    assert_int_equal(st.capacity, 16);
    assert_true(st.evictions >= 100 - 16);
    assert_int_equal(st.hits, 101); /* the positive cache only */
    free(tok);
    free(bad);
    pair_free(&p);
}

static void test_tcache_direct(void **state)
{
    dca_tcache_t *c = dca_tcache_new(4);
    unsigned char d[DCA_DIGEST_LEN] = {1, 2, 3};
    dca_identity_t id = {.id = "x", .id_len = 1, .expires = INT64_MAX}, out;
    dca_tcache_put(c, d, NOW, &id);
    assert_int_equal(dca_tcache_get(c, d, NOW + DCA_TCACHE_MAX_TTL - 1, &out), 1);
    /* a token without exp is re-verified after DCA_TCACHE_MAX_TTL */
    assert_int_equal(dca_tcache_get(c, d, NOW + DCA_TCACHE_MAX_TTL, &out), 0);
    /* a dead identity is not stored */
    id.expires = NOW;
    dca_tcache_put(c, d, NOW, &id);
    assert_int_equal(dca_tcache_get(c, d, NOW - 1, &out), 0);
    dca_tcache_free(c);
    dca_tcache_t *off = dca_tcache_new(0);
    id.expires = INT64_MAX;
    dca_tcache_put(off, d, NOW, &id);
    assert_int_equal(dca_tcache_get(off, d, NOW, &out), 0);
    dca_tcache_free(off);
}

/* RSA keys under 2048 bits are refused, from a PEM file and from a JWKS */
static void test_short_rsa_refused(void **state)
{
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    assert_int_equal(mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)), 0);
    assert_int_equal(mbedtls_rsa_gen_key(mbedtls_pk_rsa(pk), mbedtls_ctr_drbg_random, &T.drbg, 1024, 65537), 0);
    unsigned char pemtext[1024];
    assert_int_equal(mbedtls_pk_write_pubkey_pem(&pk, pemtext, sizeof(pemtext)), 0);
    char path[] = "/tmp/dc_rsa1024_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, pemtext, strlen((char *)pemtext)), (ssize_t)strlen((char *)pemtext));
    close(fd);
    dca_keyset_t *ks = NULL;
    char err[256];
    assert_int_equal(dca_keyset_from_pem_file(DCA_ALG_RS256, path, NULL, &ks, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "1024 bits, at least 2048"));
    unlink(path);
    unsigned char n[128], e[3] = {1, 0, 1};
    assert_int_equal(mbedtls_rsa_export_raw(mbedtls_pk_rsa(pk), n, sizeof(n), NULL, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    char nb[200], eb[8], json[512];
    ts_b64url(n, sizeof(n), nb);
    ts_b64url(e, sizeof(e), eb);
    snprintf(json, sizeof(json), "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}]}", nb, eb);
    assert_int_equal(dca_keyset_from_jwks(DCA_ALG_RS256, json, strlen(json), "jwks", &ks, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "at least 2048"));
    mbedtls_pk_free(&pk);
}

static int setup(void **state)
{
    const char *src = getenv("DC_SOURCE_DIR");
    ts_init(&T, src ? src : ".");
    return 0;
}

static int teardown(void **state)
{
    ts_fini(&T);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_alg_names),
        cmocka_unit_test(test_each_alg),
        cmocka_unit_test(test_kid_selection),
        cmocka_unit_test(test_time_claims),
        cmocka_unit_test(test_iss_aud_required),
        cmocka_unit_test(test_tampering),
        cmocka_unit_test(test_alg_confusion),
        cmocka_unit_test(test_es256_der_refused),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_jwks_loading),
        cmocka_unit_test(test_token_cache),
        cmocka_unit_test(test_tcache_direct),
        cmocka_unit_test(test_short_rsa_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
