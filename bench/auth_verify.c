/* Figures for the auth plugin (issue 16): JWT verifications per second on one core for each
 * algorithm without the token cache, and the cost of a token-cache hit. Printed, never asserted.
 * Usage: bench_auth_verify [seconds per figure, default 1] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwt.h"
#include "../tests/unit/auth_testsign.h"

#define NOW 1700000000
static const char SECRET[] = "bench-only-hmac-secret-0123456789-0123456789-0123456789-0123456";
static const char CLAIMS[] = "{\"sub\":\"user-12345\",\"tier\":\"pro\",\"iss\":\"https://issuer.example\","
                             "\"aud\":\"dexcache\",\"exp\":1700003600,\"iat\":1699999000}";

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void run(const char *label, dca_keyset_t *ks, const char *tok, int cache, double secs, dca_reason_t want)
{
    const char *aud[] = {"dexcache"};
    dca_jwt_conf_t c = {
        .iss = "https://issuer.example", .aud = aud, .naud = 1, .tier_claim = "tier", .no_cache = !cache};
    char err[256];
    dca_jwt_t *j = dca_jwt_new(&c, ks, err, sizeof(err));
    dca_jwt_verifier_t *v = j ? dca_jwt_verifier_new(j, err, sizeof(err)) : NULL;
    if (v == NULL) {
        fprintf(stderr, "%s: %s\n", label, err);
        exit(1);
    }
    size_t len = strlen(tok);
    dca_identity_t id;
    long n = 0;
    double t0 = mono(), t;
    do {
        for (int i = 0; i < 64; i++)
            if (dca_jwt_verify(v, tok, len, NOW, &id, NULL) != want) {
                fprintf(stderr, "%s: unexpected answer\n", label);
                exit(1);
            }
        n += 64;
    } while ((t = mono() - t0) < secs);
    printf("%-28s %10.0f verifications/s  %8.2f us each  (token %zu bytes)\n", label, n / t, t * 1e6 / n, len);
    dca_jwt_verifier_free(v);
    dca_jwt_free(j);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    ts_t T;
    ts_init(&T, DC_SOURCE_DIR);
    char err[256], path[1200];
    dca_keyset_t *ks;
    char *hs256 = ts_token(&T, TS_HS256, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", CLAIMS, SECRET, strlen(SECRET), NULL);
    char *rs256 = ts_token(&T, TS_RS256, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", CLAIMS, NULL, 0, NULL);
    char *es256 = ts_token(&T, TS_ES256, "{\"alg\":\"ES256\",\"typ\":\"JWT\"}", CLAIMS, NULL, 0, NULL);
    for (int cache = 0; cache <= 1; cache++) {
        dca_keyset_from_secret(DCA_ALG_HS256, SECRET, strlen(SECRET), &ks, err, sizeof(err));
        run(cache ? "HS256, token cache hit" : "HS256, no cache", ks, hs256, cache, secs, DCA_OK);
        ts_path(&T, "test-rsa2048-public.pem", path, sizeof(path));
        dca_keyset_from_pem_file(DCA_ALG_RS256, path, NULL, &ks, err, sizeof(err));
        run(cache ? "RS256-2048, token cache hit" : "RS256-2048, no cache", ks, rs256, cache, secs, DCA_OK);
        ts_path(&T, "test-ec-p256-public.pem", path, sizeof(path));
        dca_keyset_from_pem_file(DCA_ALG_ES256, path, NULL, &ks, err, sizeof(err));
        run(cache ? "ES256, token cache hit" : "ES256, no cache", ks, es256, cache, secs, DCA_OK);
    }
    /* a forged ES256 token sent again and again: refused from the refusal cache after the first */
    char *forged = strdup(es256);
    forged[strlen(forged) - 5] = forged[strlen(forged) - 5] == 'A' ? 'B' : 'A';
    dca_keyset_from_pem_file(DCA_ALG_ES256, path, NULL, &ks, err, sizeof(err));
    run("ES256 forged, repeated", ks, forged, 1, secs, DCA_R_BAD_SIGNATURE);
    free(forged);
    free(hs256);
    free(rs256);
    free(es256);
    ts_fini(&T);
    return 0;
}
