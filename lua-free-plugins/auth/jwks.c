/* Verification keys: see jwks.h. */
#include "jwks.h"
#include "fail.h"
#include "jwt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/rsa.h>

/* A JWKS of more bytes than this is not a key set (a few thousand keys fit) */
#define JWKS_MAX_BYTES (4u << 20)
#define DER_MAX 1200 /* SubjectPublicKeyInfo of RSA-8192 is ~1060 bytes */

static const struct {
    const char *name;
    dca_alg_t alg;
} algs[] = {{"HS256", DCA_ALG_HS256},
            {"HS384", DCA_ALG_HS384},
            {"HS512", DCA_ALG_HS512},
            {"RS256", DCA_ALG_RS256},
            {"ES256", DCA_ALG_ES256}};

dca_alg_t dca_alg_parse(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
        if (strlen(algs[i].name) == len && memcmp(algs[i].name, name, len) == 0)
            return algs[i].alg;
    return DCA_ALG_NONE;
}

const char *dca_alg_name(dca_alg_t alg)
{
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
        if (algs[i].alg == alg)
            return algs[i].name;
    return "none";
}

void dca_keyset_free(dca_keyset_t *ks)
{
    if (ks == NULL)
        return;
    if (ks->secret != NULL) {
        mbedtls_platform_zeroize(ks->secret, ks->secret_len);
        free(ks->secret);
    }
    for (size_t i = 0; i < ks->nkeys; i++) {
        free(ks->keys[i].kid);
        free(ks->keys[i].der);
    }
    free(ks->keys);
    free(ks);
}

static size_t hmac_len(dca_alg_t alg)
{
    return alg == DCA_ALG_HS256 ? 32 : alg == DCA_ALG_HS384 ? 48 : 64;
}

int dca_keyset_from_secret(dca_alg_t alg, const void *secret, size_t len, dca_keyset_t **out, char *err, size_t errlen)
{
    if (!dca_alg_is_hmac(alg))
        return dca_fail(err, errlen, "a secret is only used with HS256/HS384/HS512, not %s", dca_alg_name(alg));
    if (len < hmac_len(alg))
        return dca_fail(err, errlen, "the %s secret is %zu bytes, at least %zu are required (RFC 7518 3.2)",
                        dca_alg_name(alg), len, hmac_len(alg));
    dca_keyset_t *ks = calloc(1, sizeof(*ks));
    if (ks == NULL || (ks->secret = malloc(len)) == NULL) {
        free(ks);
        return dca_fail(err, errlen, "out of memory");
    }
    ks->alg = alg;
    memcpy(ks->secret, secret, len);
    ks->secret_len = len;
    *out = ks;
    return 0;
}

/* Checks that pk suits alg (RSA >= 2048 bits for RS256, EC P-256 for ES256) and appends it as DER
 * with kid to ks. */
static int add_pk(dca_keyset_t *ks, mbedtls_pk_context *pk, const char *kid, size_t kid_len, const char *what,
                  char *err, size_t errlen)
{
    if (ks->alg == DCA_ALG_RS256) {
        if (mbedtls_pk_get_type(pk) != MBEDTLS_PK_RSA)
            return dca_fail(err, errlen, "%s: RS256 needs an RSA public key", what);
        if (mbedtls_pk_get_bitlen(pk) < 2048)
            return dca_fail(err, errlen, "%s: the RSA key has %zu bits, at least 2048 are required", what,
                            mbedtls_pk_get_bitlen(pk));
    } else {
        if (mbedtls_pk_get_type(pk) != MBEDTLS_PK_ECKEY || mbedtls_pk_ec(*pk)->grp.id != MBEDTLS_ECP_DP_SECP256R1)
            return dca_fail(err, errlen, "%s: ES256 needs an EC public key on P-256", what);
    }
    unsigned char buf[DER_MAX];
    int n = mbedtls_pk_write_pubkey_der(pk, buf, sizeof(buf));
    if (n <= 0)
        return dca_fail(err, errlen, "%s: the public key cannot be encoded (mbedtls -0x%04x)", what, (unsigned)-n);
    for (size_t i = 0; kid != NULL && i < ks->nkeys; i++)
        if (ks->keys[i].kid != NULL && strlen(ks->keys[i].kid) == kid_len && memcmp(ks->keys[i].kid, kid, kid_len) == 0)
            return dca_fail(err, errlen, "%s: two keys have the kid \"%.*s\"", what, (int)kid_len, kid);
    dca_key_t *keys = realloc(ks->keys, (ks->nkeys + 1) * sizeof(*keys));
    if (keys == NULL)
        return dca_fail(err, errlen, "out of memory");
    ks->keys = keys;
    dca_key_t *k = keys + ks->nkeys;
    memset(k, 0, sizeof(*k));
    if ((k->der = malloc((size_t)n)) == NULL || (kid != NULL && (k->kid = strndup(kid, kid_len)) == NULL)) {
        free(k->der);
        return dca_fail(err, errlen, "out of memory");
    }
    /* mbedtls writes DER backwards, at the end of the buffer */
    memcpy(k->der, buf + sizeof(buf) - n, (size_t)n);
    k->der_len = (size_t)n;
    ks->nkeys++;
    return 0;
}

static dca_keyset_t *new_public_set(dca_alg_t alg, char *err, size_t errlen)
{
    if (alg != DCA_ALG_RS256 && alg != DCA_ALG_ES256) {
        dca_fail(err, errlen,
                 "public keys are only used with RS256 or ES256, not %s (an HS secret must never be a public key)",
                 dca_alg_name(alg));
        return NULL;
    }
    dca_keyset_t *ks = calloc(1, sizeof(*ks));
    if (ks == NULL) {
        dca_fail(err, errlen, "out of memory");
        return NULL;
    }
    ks->alg = alg;
    return ks;
}

int dca_keyset_from_pem_file(dca_alg_t alg, const char *path, const char *kid, dca_keyset_t **out, char *err,
                             size_t errlen)
{
    dca_keyset_t *ks = new_public_set(alg, err, errlen);
    if (ks == NULL)
        return -1;
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    int ret = mbedtls_pk_parse_public_keyfile(&pk, path);
    if (ret != 0) {
        dca_fail(err, errlen, "%s: not a readable PEM or DER public key (mbedtls -0x%04x)", path, (unsigned)-ret);
        goto fail;
    }
    if (add_pk(ks, &pk, kid, kid != NULL ? strlen(kid) : 0, path, err, errlen) != 0)
        goto fail;
    mbedtls_pk_free(&pk);
    *out = ks;
    return 0;
fail:
    mbedtls_pk_free(&pk);
    dca_keyset_free(ks);
    return -1;
}

/* the bytes of a base64url JWK member; -1 when missing or not strict base64url */
static long member_bytes(const cJSON *jwk, const char *name, unsigned char *buf, size_t cap)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(jwk, name);
    if (!cJSON_IsString(m))
        return -1;
    size_t len = strlen(m->valuestring);
    if (len == 0 || dca_b64url_decoded_max(len) > cap)
        return -1;
    return dca_b64url_decode(m->valuestring, len, buf, cap);
}

static int jwk_to_pk(dca_alg_t alg, const cJSON *jwk, mbedtls_pk_context *pk, const char *what, char *err,
                     size_t errlen)
{
    unsigned char a[1025], b[1025];
    if (alg == DCA_ALG_RS256) {
        long nlen = member_bytes(jwk, "n", a, sizeof(a)), elen = member_bytes(jwk, "e", b, sizeof(b));
        if (nlen <= 0 || elen <= 0)
            return dca_fail(err, errlen, "%s: n and e must be base64url", what);
        mbedtls_rsa_context *rsa;
        if (mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) != 0 ||
            (rsa = mbedtls_pk_rsa(*pk)) == NULL ||
            mbedtls_rsa_import_raw(rsa, a, (size_t)nlen, NULL, 0, NULL, 0, NULL, 0, b, (size_t)elen) != 0 ||
            mbedtls_rsa_complete(rsa) != 0 || mbedtls_rsa_check_pubkey(rsa) != 0)
            return dca_fail(err, errlen, "%s: not a valid RSA public key", what);
        return 0;
    }
    const cJSON *crv = cJSON_GetObjectItemCaseSensitive(jwk, "crv");
    if (!cJSON_IsString(crv) || strcmp(crv->valuestring, "P-256") != 0)
        return dca_fail(err, errlen, "%s: ES256 needs crv P-256", what);
    unsigned char pt[65];
    long xlen = member_bytes(jwk, "x", a, sizeof(a)), ylen = member_bytes(jwk, "y", b, sizeof(b));
    if (xlen != 32 || ylen != 32)
        return dca_fail(err, errlen, "%s: x and y must be 32 bytes of base64url each", what);
    pt[0] = 0x04;
    memcpy(pt + 1, a, 32);
    memcpy(pt + 33, b, 32);
    mbedtls_ecp_keypair *kp;
    if (mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0 || (kp = mbedtls_pk_ec(*pk)) == NULL ||
        mbedtls_ecp_group_load(&kp->grp, MBEDTLS_ECP_DP_SECP256R1) != 0 ||
        mbedtls_ecp_point_read_binary(&kp->grp, &kp->Q, pt, sizeof(pt)) != 0 ||
        mbedtls_ecp_check_pubkey(&kp->grp, &kp->Q) != 0)
        return dca_fail(err, errlen, "%s: not a point on P-256", what);
    return 0;
}

int dca_keyset_from_jwks(dca_alg_t alg, const char *json, size_t len, const char *name, dca_keyset_t **out, char *err,
                         size_t errlen)
{
    dca_keyset_t *ks = new_public_set(alg, err, errlen);
    if (ks == NULL)
        return -1;
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(root, "keys");
    if (!cJSON_IsArray(keys)) {
        dca_fail(err, errlen, "%s: not a JWK Set (a JSON object with a \"keys\" array)", name);
        goto fail;
    }
    const char *kty_want = alg == DCA_ALG_RS256 ? "RSA" : "EC";
    int idx = -1;
    const cJSON *jwk;
    cJSON_ArrayForEach(jwk, keys)
    {
        idx++;
        if (!cJSON_IsObject(jwk)) {
            dca_fail(err, errlen, "%s: keys[%d] is not an object", name, idx);
            goto fail;
        }
        const cJSON *kty = cJSON_GetObjectItemCaseSensitive(jwk, "kty");
        const cJSON *kalg = cJSON_GetObjectItemCaseSensitive(jwk, "alg");
        const cJSON *use = cJSON_GetObjectItemCaseSensitive(jwk, "use");
        const cJSON *kid = cJSON_GetObjectItemCaseSensitive(jwk, "kid");
        if (!cJSON_IsString(kty) || strcmp(kty->valuestring, kty_want) != 0)
            continue;
        if (kalg != NULL && (!cJSON_IsString(kalg) || strcmp(kalg->valuestring, dca_alg_name(alg)) != 0))
            continue;
        if (use != NULL && (!cJSON_IsString(use) || strcmp(use->valuestring, "sig") != 0))
            continue;
        char what[512];
        snprintf(what, sizeof(what), "%s: keys[%d]", name, idx);
        if (kid != NULL && (!cJSON_IsString(kid) || kid->valuestring[0] == '\0' || strlen(kid->valuestring) > 256)) {
            dca_fail(err, errlen, "%s: kid must be a string of 1 to 256 bytes", what);
            goto fail;
        }
        mbedtls_pk_context pk;
        mbedtls_pk_init(&pk);
        int ret = jwk_to_pk(alg, jwk, &pk, what, err, errlen);
        if (ret == 0)
            ret = add_pk(ks, &pk, kid ? kid->valuestring : NULL, kid ? strlen(kid->valuestring) : 0, what, err, errlen);
        mbedtls_pk_free(&pk);
        if (ret != 0)
            goto fail;
    }
    if (ks->nkeys == 0) {
        dca_fail(err, errlen, "%s: no %s key usable for %s", name, kty_want, dca_alg_name(alg));
        goto fail;
    }
    for (size_t i = 0; ks->nkeys > 1 && i < ks->nkeys; i++)
        if (ks->keys[i].kid == NULL) {
            dca_fail(err, errlen, "%s: with several keys, each needs a kid", name);
            goto fail;
        }
    cJSON_Delete(root);
    *out = ks;
    return 0;
fail:
    cJSON_Delete(root);
    dca_keyset_free(ks);
    return -1;
}

int dca_keyset_from_jwks_file(dca_alg_t alg, const char *path, dca_keyset_t **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return dca_fail(err, errlen, "%s: %s", path, strerror(errno));
    char *buf = malloc(JWKS_MAX_BYTES + 1);
    size_t n = buf != NULL ? fread(buf, 1, JWKS_MAX_BYTES + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    int ret;
    if (buf == NULL)
        ret = dca_fail(err, errlen, "out of memory");
    else if (bad)
        ret = dca_fail(err, errlen, "%s: read error", path);
    else if (n > JWKS_MAX_BYTES)
        ret = dca_fail(err, errlen, "%s: larger than %u bytes", path, JWKS_MAX_BYTES);
    else
        ret = dca_keyset_from_jwks(alg, buf, n, path, out, err, errlen);
    free(buf);
    return ret;
}

const dca_key_t *dca_keyset_select(const dca_keyset_t *ks, const char *kid, size_t kid_len)
{
    if (kid != NULL) {
        for (size_t i = 0; i < ks->nkeys; i++)
            if (ks->keys[i].kid != NULL && strlen(ks->keys[i].kid) == kid_len &&
                memcmp(ks->keys[i].kid, kid, kid_len) == 0)
                return ks->keys + i;
        if (ks->nkeys == 1 && ks->keys[0].kid == NULL)
            return ks->keys;
        return NULL;
    }
    return ks->nkeys == 1 ? ks->keys : NULL;
}
