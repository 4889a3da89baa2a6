/* JWT verification of the auth plugin (RFC 7519 over RFC 7515 JWS compact serialization).
 *
 * Split in two so that the expensive, thread-unsafe parts live per worker:
 * - dca_jwt_t: the immutable checking rules of one plugin instance (pinned alg, key set, leeway,
 *   iss, aud, required claims, identity and tier claims). Built on the main thread, shared read-only.
 * - dca_jwt_verifier_t: one worker's mbedtls contexts (HMAC context keyed once, RSA/EC public key
 *   contexts parsed from the key set), scratch buffers and the verified-token cache (tcache.h).
 *   Use it from one thread only.
 *
 * The algorithm is never taken from the token: the header's `alg` must equal the configured one
 * exactly, so `none`, an HS token against RSA/EC keys, or an RS token against an HMAC secret are
 * refused as bad_alg before any key is touched. The signature is checked before the claims are
 * parsed. */
#ifndef DCA_JWT_H
#define DCA_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "jwks.h"
#include "tcache.h"

/* Why a credential was refused: a name for metrics and logs, and a description usable as the RFC
 * 6750 error_description (plain ASCII, no quote or backslash). */
#define DCA_REASONS(X)                                                                                                 \
    X(MISSING, "missing", "no credential was sent")                                                                    \
    X(MALFORMED, "malformed", "the token is not a well-formed JWT")                                                    \
    X(BAD_ALG, "bad_alg", "the token is not signed with the accepted algorithm")                                       \
    X(UNKNOWN_KID, "unknown_kid", "no accepted key matches the token")                                                 \
    X(BAD_SIGNATURE, "bad_signature", "the token signature is invalid")                                                \
    X(EXPIRED, "expired", "the token has expired")                                                                     \
    X(NOT_YET_VALID, "not_yet_valid", "the token is not valid yet")                                                    \
    X(WRONG_ISS, "wrong_iss", "the token issuer is not accepted")                                                      \
    X(WRONG_AUD, "wrong_aud", "the token audience is not accepted")                                                    \
    X(MISSING_CLAIM, "missing_claim", "the token lacks a required claim")                                              \
    X(UNKNOWN_KEY, "unknown_key", "the API key is not valid")

typedef enum dca_reason {
    DCA_OK = 0,
#define DCA_REASON_ENUM(id, name, desc) DCA_R_##id,
    DCA_REASONS(DCA_REASON_ENUM)
#undef DCA_REASON_ENUM
        DCA_R__COUNT
} dca_reason_t;

const char *dca_reason_name(dca_reason_t r);
const char *dca_reason_desc(dca_reason_t r);

/* Strict base64url (RFC 4648 section 5, as RFC 7515 uses it): no padding, no whitespace, no
 * character outside [A-Za-z0-9_-], no length of 4n+1, and the unused low bits of the last
 * character must be zero (one encoding per byte string). Writes at most cap bytes. Returns the
 * decoded length, or -1. */
long dca_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap);
/* bytes needed to decode len characters */
static inline size_t dca_b64url_decoded_max(size_t len)
{
    return len / 4 * 3 + 2;
}

#define DCA_JWT_DEFAULT_MAX_TOKEN 8192
#define DCA_JWT_DEFAULT_CACHE 4096

/* Checking rules; dca_jwt_new copies every string and array, the caller keeps ownership of this. */
typedef struct dca_jwt_conf {
    int64_t leeway;         /* seconds of clock skew allowed on exp and nbf, >= 0 */
    const char *iss;        /* NULL: not checked; else the iss claim must equal it */
    const char *const *aud; /* naud == 0: not checked; else aud (string or array) must hold one */
    size_t naud;
    const char *const *required; /* claims that must be present, whatever their value */
    size_t nrequired;
    const char *identity_claim; /* NULL: "sub"; must be a string of 1..DCA_ID_MAX bytes */
    const char *tier_claim;     /* NULL: no tier from the token; if set and present: a string */
    size_t max_token;           /* 0: DCA_JWT_DEFAULT_MAX_TOKEN; longer tokens are malformed */
    size_t cache_entries;       /* per worker; 0 here means DCA_JWT_DEFAULT_CACHE */
    int no_cache;               /* 1: no token cache (benchmarks, tests) */
} dca_jwt_conf_t;

typedef struct dca_jwt dca_jwt_t;

/* Takes ownership of ks (freed by dca_jwt_free, or here on failure). NULL with err on failure. */
dca_jwt_t *dca_jwt_new(const dca_jwt_conf_t *conf, dca_keyset_t *ks, char *err, size_t errlen);
void dca_jwt_free(dca_jwt_t *j);
dca_alg_t dca_jwt_alg(const dca_jwt_t *j);

typedef struct dca_jwt_verifier dca_jwt_verifier_t;

/* One worker's verifier over j, which must outlive it. NULL with err when a key does not parse
 * (cannot happen for a key set built by jwks.h) or memory is short. */
dca_jwt_verifier_t *dca_jwt_verifier_new(const dca_jwt_t *j, char *err, size_t errlen);
void dca_jwt_verifier_free(dca_jwt_verifier_t *v);

/* Verifies `token` (the bare compact JWS, without "Bearer ") at unix time `now`. DCA_OK with *out
 * filled, or the reason of the refusal (*out is then unspecified). A token verified before and
 * still valid is answered from the verifier's cache without a signature check, and so is a token
 * refused before for a reason time cannot undo (all but not_yet_valid; the refusals have a cache
 * of their own, so bad tokens never evict good ones); *cached says which (may be NULL). No
 * allocation on a cache hit; on a miss only cJSON's and mbedtls bignum's. */
dca_reason_t dca_jwt_verify(dca_jwt_verifier_t *v, const char *token, size_t len, int64_t now, dca_identity_t *out,
                            int *cached);

/* The verifier's token cache counters. */
void dca_jwt_verifier_stats(const dca_jwt_verifier_t *v, dca_tcache_stats_t *out);

#endif
