/* Token minting for the auth plugin's tests and bench: signs compact JWS with the throwaway keys of
 * lua-free-plugins/auth/testdata (test-only-*-private.pem). Test code only: aborts on any error. */
#ifndef DC_TEST_AUTH_TESTSIGN_H
#define DC_TEST_AUTH_TESTSIGN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha256.h>

typedef enum ts_how { TS_HS256, TS_HS384, TS_HS512, TS_RS256, TS_ES256, TS_ES256_DER, TS_UNSIGNED } ts_how_t;

typedef struct ts {
    mbedtls_entropy_context ent;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context rsa, rsa_b, ec;
    char dir[1024]; /* testdata folder */
} ts_t;

static inline void ts_die(const char *what)
{
    fprintf(stderr, "auth_testsign: %s\n", what);
    abort();
}

static inline void ts_path(const ts_t *t, const char *file, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", t->dir, file);
}

static inline void ts_load(ts_t *t, mbedtls_pk_context *pk, const char *file)
{
    char p[1200];
    ts_path(t, file, p, sizeof(p));
    mbedtls_pk_init(pk);
    if (mbedtls_pk_parse_keyfile(pk, p, NULL) != 0)
        ts_die(p);
}

static inline void ts_init(ts_t *t, const char *srcdir)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->dir, sizeof(t->dir), "%s/lua-free-plugins/auth/testdata", srcdir);
    mbedtls_entropy_init(&t->ent);
    mbedtls_ctr_drbg_init(&t->drbg);
    if (mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func, &t->ent, (const unsigned char *)"ts", 2) != 0)
        ts_die("drbg");
    ts_load(t, &t->rsa, "test-only-rsa2048-private.pem");
    ts_load(t, &t->rsa_b, "test-only-rsa2048-b-private.pem");
    ts_load(t, &t->ec, "test-only-ec-p256-private.pem");
}

static inline void ts_fini(ts_t *t)
{
    mbedtls_pk_free(&t->rsa);
    mbedtls_pk_free(&t->rsa_b);
    mbedtls_pk_free(&t->ec);
    mbedtls_ctr_drbg_free(&t->drbg);
    mbedtls_entropy_free(&t->ent);
}

static inline size_t ts_b64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

/* base64url(header) "." base64url(claims) "." base64url(signature); key is the private key for RS/ES
 * (NULL: the default one), secret the HMAC key for HS. Returns a malloc'd string. */
static inline char *ts_token(ts_t *t, ts_how_t how, const char *header, const char *claims, const void *secret,
                             size_t secret_len, mbedtls_pk_context *key)
{
    size_t hl = strlen(header), cl = strlen(claims);
    char *tok = malloc((hl + cl) * 2 + 1200);
    size_t n = ts_b64url((const unsigned char *)header, hl, tok);
    tok[n++] = '.';
    n += ts_b64url((const unsigned char *)claims, cl, tok + n);
    unsigned char sig[1100], hash[64];
    size_t sl = 0;
    if (how == TS_HS256 || how == TS_HS384 || how == TS_HS512) {
        mbedtls_md_type_t md = how == TS_HS256   ? MBEDTLS_MD_SHA256
                               : how == TS_HS384 ? MBEDTLS_MD_SHA384
                                                 : MBEDTLS_MD_SHA512;
        const mbedtls_md_info_t *mi = mbedtls_md_info_from_type(md);
        if (mbedtls_md_hmac(mi, secret, secret_len, (const unsigned char *)tok, n, sig) != 0)
            ts_die("hmac");
        sl = mbedtls_md_get_size(mi);
    } else if (how == TS_RS256) {
        mbedtls_sha256_ret((const unsigned char *)tok, n, hash, 0);
        if (mbedtls_pk_sign(key ? key : &t->rsa, MBEDTLS_MD_SHA256, hash, 32, sig, &sl, mbedtls_ctr_drbg_random,
                            &t->drbg) != 0)
            ts_die("rsa sign");
    } else if (how == TS_ES256 || how == TS_ES256_DER) {
        mbedtls_sha256_ret((const unsigned char *)tok, n, hash, 0);
        mbedtls_ecp_keypair *kp = mbedtls_pk_ec(key ? *key : t->ec);
        if (how == TS_ES256_DER) {
            if (mbedtls_pk_sign(key ? key : &t->ec, MBEDTLS_MD_SHA256, hash, 32, sig, &sl, mbedtls_ctr_drbg_random,
                                &t->drbg) != 0)
                ts_die("ec sign der");
        } else {
            mbedtls_mpi r, s;
            mbedtls_mpi_init(&r);
            mbedtls_mpi_init(&s);
            if (mbedtls_ecdsa_sign(&kp->grp, &r, &s, &kp->d, hash, 32, mbedtls_ctr_drbg_random, &t->drbg) != 0 ||
                mbedtls_mpi_write_binary(&r, sig, 32) != 0 || mbedtls_mpi_write_binary(&s, sig + 32, 32) != 0)
                ts_die("ec sign");
            mbedtls_mpi_free(&r);
            mbedtls_mpi_free(&s);
            sl = 64;
        }
    }
    tok[n++] = '.';
    n += ts_b64url(sig, sl, tok + n);
    return tok;
}

#endif
