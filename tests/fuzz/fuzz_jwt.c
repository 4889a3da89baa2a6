/* libFuzzer target for the auth plugin's token parser (lua-free-plugins/auth/jwt.c). Never crash or
 * overread, and keep these invariants:
 *  - base64url: a decode that succeeds re-encodes to exactly its input (strict: one encoding per
 *    byte string), and never writes more than the capacity it was given;
 *  - an arbitrary input as a token gives a reason within the enum, and never DCA_OK (it cannot carry
 *    a valid HMAC under a secret the input does not know... except by the second mode below);
 *  - second mode (first byte 'J'): the rest, split at the first '\n', is a JOSE header and a claims
 *    set that the harness signs with the verifier's HS256 secret, so the JSON readers behind the
 *    signature check are reached too; an accepted token yields a printable identity of the length
 *    it states, and verifying it twice gives the same answer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/md.h>

#include "jwt.h"

#define NOW 1700000000
static const char SECRET[] = "fuzz-only-hmac-secret-0123456789";

static dca_jwt_verifier_t *v;

static void check(int ok)
{
    if (!ok)
        abort();
}

static size_t enc(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned x = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[x >> 18];
        out[o++] = a[(x >> 12) & 63];
        out[o++] = a[(x >> 6) & 63];
        out[o++] = a[x & 63];
    }
    if (n - i >= 1) {
        unsigned x = (unsigned)in[i] << 16 | (n - i == 2 ? (unsigned)in[i + 1] << 8 : 0);
        out[o++] = a[x >> 18];
        out[o++] = a[(x >> 12) & 63];
        if (n - i == 2)
            out[o++] = a[(x >> 6) & 63];
    }
    return o;
}

static void init(void)
{
    const char *aud[] = {"dexcache"};
    const char *req[] = {"scope"};
    dca_jwt_conf_t c = {.leeway = 30,
                        .aud = aud,
                        .naud = 1,
                        .required = req,
                        .nrequired = 1,
                        .tier_claim = "tier",
                        .iss = "iss",
                        .no_cache = 1};
    dca_keyset_t *ks = NULL;
    char err[256];
    check(dca_keyset_from_secret(DCA_ALG_HS256, SECRET, strlen(SECRET), &ks, err, sizeof(err)) == 0);
    dca_jwt_t *j = dca_jwt_new(&c, ks, err, sizeof(err));
    check(j != NULL);
    v = dca_jwt_verifier_new(j, err, sizeof(err));
    check(v != NULL);
}

static void verify(const char *tok, size_t len, int may_pass)
{
    dca_identity_t id;
    dca_reason_t r = dca_jwt_verify(v, tok, len, NOW, &id, NULL);
    check((unsigned)r < DCA_R__COUNT);
    check(may_pass || r != DCA_OK);
    if (r == DCA_OK) {
        check(id.id_len > 0 && id.id_len <= DCA_ID_MAX && strlen(id.id) == id.id_len);
        check(id.tier_len <= DCA_TIER_MAX && strlen(id.tier) == id.tier_len);
        for (size_t i = 0; i < id.id_len; i++)
            check((unsigned char)id.id[i] >= 0x20);
        check(id.expires > NOW);
    }
    dca_identity_t id2;
    check(dca_jwt_verify(v, tok, len, NOW, &id2, NULL) == r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (v == NULL)
        init();
    /* base64url round trip */
    size_t cap = dca_b64url_decoded_max(size);
    unsigned char *out = malloc(cap + 1);
    long n = dca_b64url_decode((const char *)data, size, out, cap);
    check(n >= -1 && (n < 0 || (size_t)n <= cap));
    if (n >= 0) {
        char *back = malloc(size + 4);
        check(enc(out, (size_t)n, back) == size && memcmp(back, data, size) == 0);
        free(back);
    }
    free(out);

    if (size > 0 && data[0] == 'J') {
        const uint8_t *nl = memchr(data + 1, '\n', size - 1);
        if (nl == NULL)
            return 0;
        size_t hl = (size_t)(nl - data - 1), cl = size - hl - 2;
        char *tok = malloc((hl + cl) * 2 + 128);
        size_t t = enc(data + 1, hl, tok);
        tok[t++] = '.';
        t += enc(nl + 1, cl, tok + t);
        unsigned char mac[32];
        mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), (const unsigned char *)SECRET, strlen(SECRET),
                        (const unsigned char *)tok, t, mac);
        tok[t++] = '.';
        t += enc(mac, 32, tok + t);
        verify(tok, t, 1);
        free(tok);
    } else {
        verify((const char *)data, size, 0);
    }
    return 0;
}
