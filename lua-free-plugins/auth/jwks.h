/* Verification keys of the auth plugin's JWT check: one immutable key set per plugin instance.
 *
 * A key set is pinned to one algorithm (the configured `alg`) and holds either the HMAC secret
 * (HS256/384/512) or public keys (RS256: RSA >= 2048 bits; ES256: EC P-256), each with an
 * optional kid. Public keys are kept as DER SubjectPublicKeyInfo bytes, never as mbedtls contexts:
 * mbedtls RSA/ECP contexts cache values during verification and are not safe to share between
 * threads, so each worker parses its own contexts from these bytes (jwt.h, dca_jwt_verifier_new).
 * After it is built a key set is read-only and may be shared by every worker. Reloading keys
 * (SIGHUP) means building a new key set and swapping it in with a new instance.
 *
 * Loaders return 0, or -1 with a message in err (always NUL-terminated) naming the file and what
 * was wrong; they allocate with malloc and the caller frees with dca_keyset_free. */
#ifndef DCA_JWKS_H
#define DCA_JWKS_H

#include <stddef.h>

typedef enum dca_alg {
    DCA_ALG_NONE = 0, /* never accepted: the value of an unknown name */
    DCA_ALG_HS256,
    DCA_ALG_HS384,
    DCA_ALG_HS512,
    DCA_ALG_RS256,
    DCA_ALG_ES256,
} dca_alg_t;

/* DCA_ALG_NONE for anything but the five exact JWA names (so "none", "HS256 " and "hs256" too) */
dca_alg_t dca_alg_parse(const char *name, size_t len);
const char *dca_alg_name(dca_alg_t alg);
static inline int dca_alg_is_hmac(dca_alg_t a)
{
    return a == DCA_ALG_HS256 || a == DCA_ALG_HS384 || a == DCA_ALG_HS512;
}

typedef struct dca_key {
    char *kid;          /* NULL: the key has no kid */
    unsigned char *der; /* SubjectPublicKeyInfo */
    size_t der_len;
} dca_key_t;

typedef struct dca_keyset {
    dca_alg_t alg;
    unsigned char *secret; /* HS only */
    size_t secret_len;
    dca_key_t *keys; /* RS/ES only */
    size_t nkeys;
} dca_keyset_t;

/* An HMAC key set. The secret must be at least as long as the hash output (RFC 7518 3.2: 32, 48
 * or 64 bytes). Refused for a non-HS alg. */
int dca_keyset_from_secret(dca_alg_t alg, const void *secret, size_t len, dca_keyset_t **out, char *err, size_t errlen);
/* One public key from a PEM (or DER) file; kid may be NULL. Refused for an HS alg: a public key
 * used as an HMAC secret is the classic algorithm-confusion attack. */
int dca_keyset_from_pem_file(dca_alg_t alg, const char *path, const char *kid, dca_keyset_t **out, char *err,
                             size_t errlen);
/* Public keys from an RFC 7517 JWK Set (`{"keys": [...]}`): kty RSA (n, e) for RS256, kty EC crv
 * P-256 (x, y) for ES256. Keys of another type, or whose `alg` names another algorithm, or whose
 * `use` is not "sig", are skipped; a set with no usable key, two keys with one kid, or a usable
 * key with bad members is refused. Refused for an HS alg. */
int dca_keyset_from_jwks(dca_alg_t alg, const char *json, size_t len, const char *name, dca_keyset_t **out, char *err,
                         size_t errlen);
int dca_keyset_from_jwks_file(dca_alg_t alg, const char *path, dca_keyset_t **out, char *err, size_t errlen);
void dca_keyset_free(dca_keyset_t *ks);

/* The key a token selects: with a kid, the key of that kid, or else the only key when it has no
 * kid; without a kid, the only key. NULL when no key applies. */
const dca_key_t *dca_keyset_select(const dca_keyset_t *ks, const char *kid, size_t kid_len);

#endif
