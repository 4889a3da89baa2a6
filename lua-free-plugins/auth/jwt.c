/* JWT verification: see jwt.h. */
#include "jwt.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <mbedtls/bignum.h>
#include <mbedtls/constant_time.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha256.h>
#include <sodium.h>

/* a JOSE header or claims set with more members than this is refused (bounds the duplicate check) */
#define MAX_MEMBERS 64

static const char *const reason_names[] = {"ok",
#define DCA_REASON_NAME(id, name, desc) name,
                                           DCA_REASONS(DCA_REASON_NAME)
#undef DCA_REASON_NAME
};
static const char *const reason_descs[] = {"ok",
#define DCA_REASON_DESC(id, name, desc) desc,
                                           DCA_REASONS(DCA_REASON_DESC)
#undef DCA_REASON_DESC
};

const char *dca_reason_name(dca_reason_t r)
{
    return (unsigned)r < DCA_R__COUNT ? reason_names[r] : "unknown";
}

const char *dca_reason_desc(dca_reason_t r)
{
    return (unsigned)r < DCA_R__COUNT ? reason_descs[r] : "unknown";
}

/* ---- base64url ---- */

/* the value of each alphabet character plus one; 0 (the rest of the table) means invalid */
static const unsigned char b64url_val[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['-'] = 63, ['_'] = 64,
};

long dca_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    if (len % 4 == 1)
        return -1;
    size_t full = len / 4, rest = len % 4, outlen = full * 3 + (rest ? rest - 1 : 0);
    if (outlen > cap || outlen > (size_t)LONG_MAX)
        return -1;
    const unsigned char *p = (const unsigned char *)in;
    unsigned char *o = out;
    unsigned bad = 0;
    for (size_t i = 0; i < full; i++, p += 4) {
        unsigned a = b64url_val[p[0]], b = b64url_val[p[1]], c = b64url_val[p[2]], d = b64url_val[p[3]];
        bad |= (a == 0) | (b == 0) | (c == 0) | (d == 0);
        uint32_t v = ((a - 1) & 63) << 18 | ((b - 1) & 63) << 12 | ((c - 1) & 63) << 6 | ((d - 1) & 63);
        *o++ = (unsigned char)(v >> 16);
        *o++ = (unsigned char)(v >> 8);
        *o++ = (unsigned char)v;
    }
    if (rest >= 2) {
        unsigned a = b64url_val[p[0]], b = b64url_val[p[1]], c = rest == 3 ? b64url_val[p[2]] : 1;
        bad |= (a == 0) | (b == 0) | (c == 0);
        uint32_t v = ((a - 1) & 63) << 18 | ((b - 1) & 63) << 12 | ((c - 1) & 63) << 6;
        *o++ = (unsigned char)(v >> 16);
        if (rest == 3)
            *o++ = (unsigned char)(v >> 8);
        /* the bits below the last whole byte must be zero: one encoding per byte string */
        bad |= (rest == 2 ? (v & 0xffff) : (v & 0xff)) != 0;
    }
    return bad ? -1 : (long)outlen;
}

/* ---- the rules ---- */

struct dca_jwt {
    dca_keyset_t *ks;
    int64_t leeway;
    char *iss;
    char **aud;
    size_t naud;
    char **required;
    size_t nrequired;
    char *identity_claim;
    char *tier_claim;
    size_t max_token;
    size_t cache_entries;
};

static void *fail_null(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void *fail_null(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errlen > 0)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return NULL;
}

static char **dup_list(const char *const *src, size_t n, int *oom)
{
    if (n == 0)
        return NULL;
    char **dst = calloc(n, sizeof(*dst));
    if (dst == NULL) {
        *oom = 1;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if ((dst[i] = strdup(src[i])) == NULL)
            *oom = 1;
    return dst;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; l != NULL && i < n; i++)
        free(l[i]);
    free(l);
}

void dca_jwt_free(dca_jwt_t *j)
{
    if (j == NULL)
        return;
    dca_keyset_free(j->ks);
    free(j->iss);
    free_list(j->aud, j->naud);
    free_list(j->required, j->nrequired);
    free(j->identity_claim);
    free(j->tier_claim);
    free(j);
}

dca_jwt_t *dca_jwt_new(const dca_jwt_conf_t *conf, dca_keyset_t *ks, char *err, size_t errlen)
{
    if (ks == NULL || ks->alg == DCA_ALG_NONE) {
        dca_keyset_free(ks);
        return fail_null(err, errlen, "no key set");
    }
    if (conf->leeway < 0 || conf->leeway > 86400) {
        dca_keyset_free(ks);
        return fail_null(err, errlen, "leeway must be between 0 and 1 day");
    }
    dca_jwt_t *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        dca_keyset_free(ks);
        return fail_null(err, errlen, "out of memory");
    }
    int oom = 0;
    j->ks = ks;
    j->leeway = conf->leeway;
    j->iss = conf->iss != NULL ? strdup(conf->iss) : NULL;
    oom |= conf->iss != NULL && j->iss == NULL;
    j->aud = dup_list(conf->aud, conf->naud, &oom);
    j->naud = conf->naud;
    j->required = dup_list(conf->required, conf->nrequired, &oom);
    j->nrequired = conf->nrequired;
    j->identity_claim = strdup(conf->identity_claim != NULL ? conf->identity_claim : "sub");
    oom |= j->identity_claim == NULL;
    j->tier_claim = conf->tier_claim != NULL ? strdup(conf->tier_claim) : NULL;
    oom |= conf->tier_claim != NULL && j->tier_claim == NULL;
    j->max_token = conf->max_token ? conf->max_token : DCA_JWT_DEFAULT_MAX_TOKEN;
    j->cache_entries = conf->no_cache ? 0 : conf->cache_entries ? conf->cache_entries : DCA_JWT_DEFAULT_CACHE;
    if (oom) {
        dca_jwt_free(j);
        return fail_null(err, errlen, "out of memory");
    }
    if (j->max_token < 64 || j->max_token > (1u << 20)) {
        dca_jwt_free(j);
        return fail_null(err, errlen, "max_token must be between 64 and 1048576 bytes");
    }
    return j;
}

dca_alg_t dca_jwt_alg(const dca_jwt_t *j)
{
    return j->ks->alg;
}

/* ---- one worker's verifier ---- */

struct dca_jwt_verifier {
    const dca_jwt_t *j;
    mbedtls_md_context_t hmac; /* HS: keyed once, reset per token */
    size_t hmac_len;
    mbedtls_pk_context *pk; /* RS/ES: one per key of the set, same order */
    mbedtls_mpi r, s;       /* ES256 */
    unsigned char *buf;     /* decoded header, then payload, NUL-terminated: cap bytes */
    unsigned char *sig;     /* decoded signature: cap bytes, after buf in the same allocation */
    size_t cap;
    dca_tcache_t *cache;
    dca_tcache_t *refused; /* tokens refused for good (tcache.h), a quarter of the size */
    unsigned char digest_key[crypto_shorthash_siphashx24_KEYBYTES]; /* random: tcache.h DCA_DIGEST_LEN */
};

void dca_jwt_verifier_free(dca_jwt_verifier_t *v)
{
    if (v == NULL)
        return;
    mbedtls_md_free(&v->hmac);
    for (size_t i = 0; v->pk != NULL && i < v->j->ks->nkeys; i++)
        mbedtls_pk_free(v->pk + i);
    free(v->pk);
    mbedtls_mpi_free(&v->r);
    mbedtls_mpi_free(&v->s);
    free(v->buf);
    dca_tcache_free(v->cache);
    dca_tcache_free(v->refused);
    free(v);
}

static mbedtls_md_type_t md_of(dca_alg_t alg)
{
    switch (alg) {
    case DCA_ALG_HS384:
        return MBEDTLS_MD_SHA384;
    case DCA_ALG_HS512:
        return MBEDTLS_MD_SHA512;
    default:
        return MBEDTLS_MD_SHA256;
    }
}

dca_jwt_verifier_t *dca_jwt_verifier_new(const dca_jwt_t *j, char *err, size_t errlen)
{
    dca_jwt_verifier_t *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return fail_null(err, errlen, "out of memory");
    v->j = j;
    if (sodium_init() < 0) {
        free(v);
        return fail_null(err, errlen, "libsodium cannot initialise (no randomness source?)");
    }
    randombytes_buf(v->digest_key, sizeof(v->digest_key));
    mbedtls_md_init(&v->hmac);
    mbedtls_mpi_init(&v->r);
    mbedtls_mpi_init(&v->s);
    v->cap = dca_b64url_decoded_max(j->max_token) + 1;
    v->buf = malloc(2 * v->cap);
    v->sig = v->buf != NULL ? v->buf + v->cap : NULL;
    v->cache = dca_tcache_new(j->cache_entries);
    v->refused = dca_tcache_new(j->cache_entries ? (j->cache_entries / 4 > 64 ? j->cache_entries / 4 : 64) : 0);
    if (v->buf == NULL || v->cache == NULL || v->refused == NULL) {
        dca_jwt_verifier_free(v);
        return fail_null(err, errlen, "out of memory");
    }
    const dca_keyset_t *ks = j->ks;
    if (dca_alg_is_hmac(ks->alg)) {
        const mbedtls_md_info_t *md = mbedtls_md_info_from_type(md_of(ks->alg));
        if (md == NULL || mbedtls_md_setup(&v->hmac, md, 1) != 0 ||
            mbedtls_md_hmac_starts(&v->hmac, ks->secret, ks->secret_len) != 0) {
            dca_jwt_verifier_free(v);
            return fail_null(err, errlen, "cannot set up HMAC");
        }
        v->hmac_len = mbedtls_md_get_size(md);
        return v;
    }
    if ((v->pk = calloc(ks->nkeys ? ks->nkeys : 1, sizeof(*v->pk))) == NULL) {
        dca_jwt_verifier_free(v);
        return fail_null(err, errlen, "out of memory");
    }
    for (size_t i = 0; i < ks->nkeys; i++) {
        mbedtls_pk_init(v->pk + i);
        int ret = mbedtls_pk_parse_public_key(v->pk + i, ks->keys[i].der, ks->keys[i].der_len);
        if (ret != 0) {
            dca_jwt_verifier_free(v);
            return fail_null(err, errlen, "key %zu does not parse (mbedtls -0x%04x)", i, (unsigned)-ret);
        }
    }
    return v;
}

void dca_jwt_verifier_stats(const dca_jwt_verifier_t *v, dca_tcache_stats_t *out)
{
    dca_tcache_stats(v->cache, out);
}

/* Decodes one part into v->buf and NUL-terminates it; -1 when not strict base64url. */
static long decode_part(dca_jwt_verifier_t *v, const char *p, size_t len)
{
    long n = dca_b64url_decode(p, len, v->buf, v->cap - 1);
    if (n >= 0)
        v->buf[n] = '\0';
    return n;
}

/* Parses v->buf[0..n) as one JSON object with at most MAX_MEMBERS members, each name once (a
 * second "alg" or "sub" must not be able to say something else than the one we read). */
static cJSON *parse_object(dca_jwt_verifier_t *v, long n)
{
    if (n <= 0)
        return NULL;
    /* JSON allows no control character but these whitespace ones, in or out of strings; cJSON
     * would skip any byte below 0x21 as whitespace and end a string at a NUL */
    for (long i = 0; i < n; i++)
        if (v->buf[i] < 0x20 && v->buf[i] != '\t' && v->buf[i] != '\n' && v->buf[i] != '\r')
            return NULL;
    /* nor an escaped NUL: cJSON's strings end at it, so "alice\u0000bob" would read as "alice" (an
     * identity, iss or aud check on a prefix). Refused wherever it stands (also a literal "\\u0000"
     * in a value: rare, and erring toward refusal). */
    for (long i = 0; i + 6 <= n; i++)
        if (v->buf[i] == '\\' && (v->buf[i + 1] == 'u' || v->buf[i + 1] == 'U') && v->buf[i + 2] == '0' &&
            v->buf[i + 3] == '0' && v->buf[i + 4] == '0' && v->buf[i + 5] == '0')
            return NULL;
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts((const char *)v->buf, (size_t)n + 1, &end, 1);
    if (o == NULL)
        return NULL;
    if (!cJSON_IsObject(o) || end != (const char *)v->buf + n)
        goto bad;
    int count = 0;
    for (const cJSON *a = o->child; a != NULL; a = a->next) {
        if (++count > MAX_MEMBERS)
            goto bad;
        for (const cJSON *b = o->child; b != a; b = b->next)
            if (strcmp(a->string, b->string) == 0)
                goto bad;
    }
    return o;
bad:
    cJSON_Delete(o);
    return NULL;
}

static dca_reason_t check_signature(dca_jwt_verifier_t *v, const mbedtls_pk_context *pk, const char *input,
                                    size_t input_len, const unsigned char *sig, size_t sig_len)
{
    const dca_keyset_t *ks = v->j->ks;
    unsigned char mac[64];
    if (dca_alg_is_hmac(ks->alg)) {
        if (sig_len != v->hmac_len)
            return DCA_R_BAD_SIGNATURE;
        if (mbedtls_md_hmac_reset(&v->hmac) != 0 ||
            mbedtls_md_hmac_update(&v->hmac, (const unsigned char *)input, input_len) != 0 ||
            mbedtls_md_hmac_finish(&v->hmac, mac) != 0)
            return DCA_R_BAD_SIGNATURE;
        return mbedtls_ct_memcmp(mac, sig, sig_len) == 0 ? DCA_OK : DCA_R_BAD_SIGNATURE;
    }
    if (mbedtls_sha256_ret((const unsigned char *)input, input_len, mac, 0) != 0)
        return DCA_R_BAD_SIGNATURE;
    if (ks->alg == DCA_ALG_RS256) {
        mbedtls_rsa_context *rsa = mbedtls_pk_rsa(*pk);
        if (sig_len != mbedtls_rsa_get_len(rsa))
            return DCA_R_BAD_SIGNATURE;
        return mbedtls_rsa_rsassa_pkcs1_v15_verify(rsa, NULL, NULL, MBEDTLS_RSA_PUBLIC, MBEDTLS_MD_SHA256, 32, mac,
                                                   sig) == 0
                   ? DCA_OK
                   : DCA_R_BAD_SIGNATURE;
    }
    /* ES256: the JWS signature is R || S, 32 bytes each (RFC 7518 3.4), never DER */
    if (sig_len != 64)
        return DCA_R_BAD_SIGNATURE;
    mbedtls_ecp_keypair *kp = mbedtls_pk_ec(*pk);
    if (mbedtls_mpi_read_binary(&v->r, sig, 32) != 0 || mbedtls_mpi_read_binary(&v->s, sig + 32, 32) != 0)
        return DCA_R_BAD_SIGNATURE;
    return mbedtls_ecdsa_verify(&kp->grp, mac, 32, &kp->Q, &v->r, &v->s) == 0 ? DCA_OK : DCA_R_BAD_SIGNATURE;
}

/* a NumericDate claim: DCA_OK and *out, DCA_R_MISSING_CLAIM when absent, MALFORMED otherwise */
static dca_reason_t numeric_claim(const cJSON *claims, const char *name, double *out)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(claims, name);
    if (c == NULL)
        return DCA_R_MISSING_CLAIM;
    if (!cJSON_IsNumber(c) || !isfinite(c->valuedouble))
        return DCA_R_MALFORMED;
    *out = c->valuedouble;
    return DCA_OK;
}

/* copies a printable string claim of 1..max bytes into dst */
static int copy_name(const char *s, char *dst, size_t max, uint8_t *len)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return -1;
    memcpy(dst, s, n + 1);
    *len = (uint8_t)n;
    return 0;
}

static dca_reason_t check_claims(const dca_jwt_t *j, const cJSON *claims, int64_t now, dca_identity_t *out)
{
    double exp = 0, nbf = 0;
    dca_reason_t r = numeric_claim(claims, "exp", &exp);
    if (r == DCA_R_MALFORMED)
        return r;
    int has_exp = r == DCA_OK;
    if (has_exp && (double)now - (double)j->leeway >= exp)
        return DCA_R_EXPIRED;
    r = numeric_claim(claims, "nbf", &nbf);
    if (r == DCA_R_MALFORMED)
        return r;
    if (r == DCA_OK && (double)now + (double)j->leeway < nbf)
        return DCA_R_NOT_YET_VALID;
    if (j->iss != NULL) {
        const cJSON *iss = cJSON_GetObjectItemCaseSensitive(claims, "iss");
        if (!cJSON_IsString(iss) || strcmp(iss->valuestring, j->iss) != 0)
            return DCA_R_WRONG_ISS;
    }
    if (j->naud > 0) {
        const cJSON *aud = cJSON_GetObjectItemCaseSensitive(claims, "aud");
        int match = 0;
        if (cJSON_IsString(aud)) {
            for (size_t i = 0; i < j->naud && !match; i++)
                match = strcmp(aud->valuestring, j->aud[i]) == 0;
        } else if (cJSON_IsArray(aud)) {
            const cJSON *a;
            cJSON_ArrayForEach(a, aud)
            {
                for (size_t i = 0; cJSON_IsString(a) && i < j->naud && !match; i++)
                    match = strcmp(a->valuestring, j->aud[i]) == 0;
            }
        }
        if (!match)
            return DCA_R_WRONG_AUD;
    }
    for (size_t i = 0; i < j->nrequired; i++)
        if (cJSON_GetObjectItemCaseSensitive(claims, j->required[i]) == NULL)
            return DCA_R_MISSING_CLAIM;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(claims, j->identity_claim);
    if (id == NULL)
        return DCA_R_MISSING_CLAIM;
    if (!cJSON_IsString(id) || copy_name(id->valuestring, out->id, DCA_ID_MAX, &out->id_len) != 0)
        return DCA_R_MALFORMED;
    out->tier[0] = '\0';
    out->tier_len = 0;
    if (j->tier_claim != NULL) {
        const cJSON *tier = cJSON_GetObjectItemCaseSensitive(claims, j->tier_claim);
        if (tier != NULL &&
            (!cJSON_IsString(tier) || copy_name(tier->valuestring, out->tier, DCA_TIER_MAX, &out->tier_len) != 0))
            return DCA_R_MALFORMED;
    }
    out->expires = INT64_MAX;
    if (has_exp) {
        double dies = ceil(exp + (double)j->leeway);
        out->expires = dies >= 9.2e18 ? INT64_MAX : (int64_t)dies;
    }
    return DCA_OK;
}

static dca_reason_t verify_uncached(dca_jwt_verifier_t *v, const char *token, size_t len, int64_t now,
                                    dca_identity_t *out);

dca_reason_t dca_jwt_verify(dca_jwt_verifier_t *v, const char *token, size_t len, int64_t now, dca_identity_t *out,
                            int *cached)
{
    const dca_jwt_t *j = v->j;
    if (cached != NULL)
        *cached = 0;
    if (len == 0)
        return DCA_R_MISSING;
    if (len > j->max_token)
        return DCA_R_MALFORMED;
    unsigned char digest[DCA_DIGEST_LEN];
    crypto_shorthash_siphashx24(digest, (const unsigned char *)token, len, v->digest_key);
    if (dca_tcache_get(v->cache, digest, now, out)) {
        if (cached != NULL)
            *cached = 1;
        return DCA_OK;
    }
    dca_reason_t r = (dca_reason_t)dca_tcache_get_refusal(v->refused, digest, now);
    if (r != DCA_OK) {
        if (cached != NULL)
            *cached = 1;
        return r;
    }
    r = verify_uncached(v, token, len, now, out);
    if (r == DCA_OK)
        dca_tcache_put(v->cache, digest, now, out);
    else if (r != DCA_R_NOT_YET_VALID) /* the only refusal that time undoes */
        dca_tcache_put_refusal(v->refused, digest, now, (int)r);
    return r;
}

/* The full check of a token of 1..max_token bytes, without any cache. */
static dca_reason_t verify_uncached(dca_jwt_verifier_t *v, const char *token, size_t len, int64_t now,
                                    dca_identity_t *out)
{
    const dca_jwt_t *j = v->j;

    /* exactly three non-empty parts */
    const char *end = token + len, *d1 = memchr(token, '.', len);
    const char *d2 = d1 != NULL ? memchr(d1 + 1, '.', (size_t)(end - d1 - 1)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)) != NULL || d1 == token || d2 == d1 + 1 ||
        d2 + 1 == end)
        return DCA_R_MALFORMED;

    /* JOSE header: alg pinned, no extension we would have to understand */
    cJSON *header = parse_object(v, decode_part(v, token, (size_t)(d1 - token)));
    if (header == NULL)
        return DCA_R_MALFORMED;
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(header, "alg");
    const cJSON *kid = cJSON_GetObjectItemCaseSensitive(header, "kid");
    dca_reason_t r = DCA_OK;
    if (!cJSON_IsString(alg) || cJSON_GetObjectItemCaseSensitive(header, "crit") != NULL ||
        cJSON_GetObjectItemCaseSensitive(header, "b64") != NULL || (kid != NULL && !cJSON_IsString(kid)))
        r = DCA_R_MALFORMED;
    else if (dca_alg_parse(alg->valuestring, strlen(alg->valuestring)) != j->ks->alg)
        r = DCA_R_BAD_ALG;
    const mbedtls_pk_context *pk = NULL;
    if (r == DCA_OK && !dca_alg_is_hmac(j->ks->alg)) {
        const dca_key_t *key =
            dca_keyset_select(j->ks, kid ? kid->valuestring : NULL, kid ? strlen(kid->valuestring) : 0);
        if (key == NULL)
            r = DCA_R_UNKNOWN_KID;
        else
            pk = v->pk + (key - j->ks->keys);
    }
    cJSON_Delete(header);
    if (r != DCA_OK)
        return r;

    /* every part must decode before anything is checked, so that a syntax error is "malformed"
     * whatever part holds it; the claims are parsed only once the signature holds */
    long plen = decode_part(v, d1 + 1, (size_t)(d2 - d1 - 1));
    long slen = dca_b64url_decode(d2 + 1, (size_t)(end - d2 - 1), v->sig, v->cap);
    if (plen <= 0 || slen <= 0)
        return DCA_R_MALFORMED;
    if ((r = check_signature(v, pk, token, (size_t)(d2 - token), v->sig, (size_t)slen)) != DCA_OK)
        return r;
    cJSON *claims = parse_object(v, plen);
    if (claims == NULL)
        return DCA_R_MALFORMED;
    r = check_claims(j, claims, now, out);
    cJSON_Delete(claims);
    return r;
}
