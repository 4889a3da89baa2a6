/* Unit tests for cache/key.c: exact canonical strings, the idempotence promised by key.h, buffer
 * limits, and a small ns/op measurement of the two hot request shapes (price v3, quote). */
#include "cmocka_prelude.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/key.h"
#include "core/error.h"

static char *const sets_jup[] = {"ids", "dexes", "excludeDexes"};
static char *const ignore_jup[] = {"utm_source", "ids_debug"};
static const dc_cache_key_opts_t jup = {sets_jup, 3, ignore_jup, 2};
static const dc_cache_key_opts_t none = {NULL, 0, NULL, 0};

/* Normalise q (qlen bytes) and require exactly `want`; also require that normalising the result
 * gives the same bytes and that the 3 * qlen + 1 capacity of key.h is enough. */
static void check_n(const dc_cache_key_opts_t *o, const char *q, size_t qlen, const char *want)
{
    size_t cap = 3 * qlen + 1;
    char *out = malloc(cap), *again = malloc(cap);
    long n = dc_cache_query_normalize(q, qlen, o, out, cap);
    if (n < 0 || strcmp(out, want) != 0)
        print_error("query \"%.*s\": got %ld \"%s\", want \"%s\"\n", (int)qlen, q, n, n >= 0 ? out : "", want);
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
    assert_int_equal(dc_cache_query_normalize(out, (size_t)n, o, again, cap), n);
    assert_memory_equal(again, out, (size_t)n);
    free(out);
    free(again);
}

static void check(const dc_cache_key_opts_t *o, const char *q, const char *want)
{
    check_n(o, q, strlen(q), want);
}

static void check_path(const char *p, const char *want)
{
    char out[256], again[256];
    long n = dc_cache_path_normalize(p, strlen(p), out, sizeof(out));
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
    assert_int_equal(dc_cache_path_normalize(out, (size_t)n, again, sizeof(again)), n);
    assert_string_equal(again, out);
}

static void check_key(const char *method, const char *prefix, const char *pq, const char *want)
{
    char out[1024];
    size_t bound = dc_cache_key_bound(strlen(method), prefix != NULL ? strlen(prefix) : 0, strlen(pq));
    assert_true(bound <= sizeof(out));
    long n = dc_cache_key_build(method, strlen(method), prefix, pq, strlen(pq), &jup, out, bound);
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
    assert_true((size_t)n < bound);
}

static void test_empty(void **state)
{
    check(&none, "", "");
    check(&none, "&", "");
    check(&none, "&&&", "");
    char out[1];
    assert_int_equal(dc_cache_query_normalize(NULL, 0, NULL, out, 1), 0);
    assert_string_equal(out, "");
}

static void test_param_order(void **state)
{
    check(&none, "b=2&a=1&c=3", "a=1&b=2&c=3");
    check(&none, "c=3&a=1&b=2", "a=1&b=2&c=3");
}

static void test_duplicates_kept_sorted_by_value(void **state)
{
    check(&none, "a=2&a=1&a=2", "a=1&a=2&a=2");
    check(&none, "a=10&a=9&a=1", "a=1&a=10&a=9"); /* byte order, not numeric */
}

static void test_plus_is_space(void **state)
{
    check(&none, "q=Orca+V2", "q=Orca%20V2");
    check(&none, "q=Orca%20V2", "q=Orca%20V2");
    check(&none, "q=a%2Bb", "q=a%2Bb"); /* an escaped '+' stays a plus */
}

static void test_comma_outside_key_sets(void **state)
{
    check(&none, "x=a,b", "x=a%2Cb");
    check(&none, "x=a%2cb", "x=a%2Cb");
    check(&none, "x=b,a", "x=b%2Ca"); /* not a key set: no sorting inside the value */
}

static void test_hex_case_and_unreserved(void **state)
{
    check(&none, "x=%7e%41%2d%5F", "x=~A-_");
    check(&none, "x=%c3%a9%2f", "x=%C3%A9%2F");
    check(&none, "x=a/b:c@d", "x=a%2Fb%3Ac%40d");
}

static void test_malformed_escapes(void **state)
{
    check(&none, "x=%", "x=%25");
    check(&none, "x=%G1", "x=%25G1");
    check(&none, "x=a%4", "x=a%254");
    check(&none, "x=%%41", "x=%25A");
    check(&none, "%=%", "%25=%25");
}

static void test_empty_segments(void **state)
{
    check(&none, "a=1&&b=2", "a=1&b=2");
    check(&none, "&a=1&b=2&", "a=1&b=2");
}

static void test_without_eq(void **state)
{
    check(&none, "b&a", "a&b");
    check(&none, "a=&a", "a&a="); /* "a" and "a=" differ; without '=' sorts first */
    check(&none, "a=x&a=&a", "a&a=&a=x");
}

static void test_eq_in_value_and_empty_name(void **state)
{
    check(&none, "a=b=c", "a=b%3Dc");
    check(&none, "=x&=", "=&=x");
    check(&none, "a%3Db=c&a%26b=1", "a%26b=1&a%3Db=c");
}

static void test_non_ascii_and_nul(void **state)
{
    check(&none, "\xc3\xa9=\xff", "%C3%A9=%FF");
    check_n(&none, "a=x\0y&b\0=1", 10, "a=x%00y&b%00=1");
    check(&none, "a=%00", "a=%00");
}

static void test_sort_is_decoded_byte_order(void **state)
{
    check(&none, "b=1&B=2&a=3", "B=2&a=3&b=1");       /* case-sensitive */
    check(&none, "%FF=1&a=2", "a=2&%FF=1");           /* 0xFF after 'a', though "%" < "a" */
    check(&none, "a%20b=1&a-b=2", "a%20b=1&a-b=2");   /* ' ' (0x20) before '-' */
    check(&none, "ab=1&a%62=0&a=2", "a=2&ab=0&ab=1"); /* "a%62" is "ab" */
}

static void test_price_ids_set(void **state)
{
    check(&jup, "ids=B,A,A", "ids=A,B");
    check(&jup, "ids=A%2CB", "ids=A,B");
    check(&jup, "ids=A%2cB", "ids=A,B");
    check(&jup, "ids=a", "ids=a"); /* mints are case-sensitive */
    check(&jup, "ids=b,B,a,A", "ids=A,B,a,b");
}

static void test_key_set_empty_items(void **state)
{
    check(&jup, "ids=,A,,B,", "ids=A,B");
    check(&jup, "ids=%2C%2C", "ids=");
    check(&jup, "ids=", "ids=");
    check(&jup, "ids", "ids");
    check(&jup, "ids&ids=", "ids=");
}

static void test_key_set_merge(void **state)
{
    check(&jup, "ids=C&x=1&ids=A,B&ids=A", "ids=A,B,C&x=1");
    check(&jup, "i%64s=B,A&ids=C", "ids=A,B,C"); /* names match after decoding */
}

static void test_key_set_items_encoded(void **state)
{
    check(&jup, "ids=A%252CB,C", "ids=A%252CB,C"); /* "%25" + "2C" is the item "A%2CB" */
    check(&jup, "ids=b+c,a%20c", "ids=a%20c,b%20c");
    check(&jup, "ids=%,%25", "ids=%25");   /* literal '%' and its escape are one item */
    check(&jup, "ids=%2,C", "ids=%252,C"); /* "%2," is no escape */
}

static void test_upstreams_dexes(void **state)
{
    check(&jup, "dexes=Raydium,Orca+V2,Meteora+DLMM", "dexes=Meteora%20DLMM,Orca%20V2,Raydium");
    check(&jup, "dexes=Orca%20V2%2CRaydium&dexes=Orca+V2", "dexes=Orca%20V2,Raydium");
    check(&jup, "excludeDexes=Phoenix,Lifinity+V2,Phoenix", "excludeDexes=Lifinity%20V2,Phoenix");
}

static void test_quote_orders_agree(void **state)
{
    const char *want = "amount=100000000&dexes=Orca%20V2,Raydium&inputMint=So11111111111111111111111111111111111111112&"
                       "outputMint=EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v&slippageBps=50";
    check(
        &jup,
        "inputMint=So11111111111111111111111111111111111111112&outputMint=EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
        "&amount=100000000&slippageBps=50&dexes=Orca+V2,Raydium",
        want);
    check(
        &jup,
        "slippageBps=50&dexes=Raydium%2COrca%20V2&amount=100000000&outputMint=EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTD"
        "t1v&inputMint=So11111111111111111111111111111111111111112&",
        want);
}

static void test_ignore_params(void **state)
{
    check(&jup, "b=1&utm_source=x&a=2&utm_source", "a=2&b=1");
    check(&jup, "utm%5Fsource=x&a=1", "a=1");
    check(&jup, "ids_debug=1&ids=A", "ids=A");
    char *const both[] = {"ids"};
    const dc_cache_key_opts_t o = {both, 1, both, 1}; /* ignore wins over key_sets */
    check(&o, "ids=A&z=1", "z=1");
}

static void test_option_edge_cases(void **state)
{
    check(NULL, "b=1&a=2", "a=2&b=1");
    char *const dup[] = {"ids", "ids", "a b"};
    const dc_cache_key_opts_t o = {dup, 3, NULL, 0};
    check(&o, "ids=B&ids=A", "ids=A,B");         /* a name listed twice is still one set */
    check(&o, "a+b=y,x&a%20b=z", "a%20b=x,y,z"); /* set names are matched decoded, written encoded */
}

/* Inputs that once looked risky: the result must be stable under renormalisation (check_n) and
 * under reversing the order of the '&' segments. */
static void test_order_invariance(void **state)
{
    static const char *const qs[] = {
        "ids=B&ids&ids=A", "a&a=&a=%",  "%2=1&%2=%2",     "x=%ZZ&x=%25ZZ",   "ids=%2C&dexes=%2c,&=",
        "a=+&a=%20&a=%2B", "+=1&%20=2", "ids=A%2C%2CB,,", "dexes=b,a&dexes", "\xff=1&\x7f=2",
    };
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        char fwd[128], rev[128], a[512], b[512];
        size_t n = strlen(qs[i]), w = 0, end = n;
        memcpy(fwd, qs[i], n);
        for (;;) { /* segments in reverse order */
            size_t start = end;
            while (start > 0 && fwd[start - 1] != '&')
                start--;
            memcpy(rev + w, fwd + start, end - start);
            w += end - start;
            if (start == 0)
                break;
            rev[w++] = '&';
            end = start - 1;
        }
        long la = dc_cache_query_normalize(fwd, n, &jup, a, sizeof(a));
        assert_true(la >= 0);
        assert_int_equal(dc_cache_query_normalize(rev, n, &jup, b, sizeof(b)), la);
        assert_string_equal(a, b);
        check_n(&jup, fwd, n, a);
    }
}

static void test_toobig(void **state)
{
    char out[8];
    assert_int_equal(dc_cache_query_normalize("b=2&a=1", 7, NULL, out, 7), DC_ETOOBIG);
    assert_string_equal(out, "");
    assert_int_equal(dc_cache_query_normalize("b=2&a=1", 7, NULL, out, 8), 7);
    assert_string_equal(out, "a=1&b=2");
    assert_int_equal(dc_cache_query_normalize("a", 1, NULL, NULL, 0), DC_ETOOBIG);
    assert_int_equal(dc_cache_query_normalize("\xff", 1, NULL, out, 4), 3); /* 3 * qlen + 1 */
    assert_string_equal(out, "%FF");
    assert_int_equal(dc_cache_path_normalize("/ab", 3, out, 3), DC_ETOOBIG);
    assert_int_equal(dc_cache_key_build("GET", 3, "/jup", "/price", 6, &jup, out, sizeof(out)), DC_ETOOBIG);
}

static void test_heap_fallback(void **state)
{
    /* 300 ids and 100 other params: past both stack arrays; written in reverse order */
    size_t cap = 16384;
    char *q = malloc(cap), *want = malloc(cap);
    size_t n = 0, w = 0;
    for (int i = 299; i >= 0; i--)
        n += (size_t)snprintf(q + n, cap - n, "%sids=m%03d", i == 299 ? "" : "&", i);
    for (int i = 99; i >= 0; i--)
        n += (size_t)snprintf(q + n, cap - n, "&p%02d=%d", i, i);
    w += (size_t)snprintf(want + w, cap - w, "ids=");
    for (int i = 0; i < 300; i++)
        w += (size_t)snprintf(want + w, cap - w, "%sm%03d", i == 0 ? "" : ",", i);
    for (int i = 0; i < 100; i++)
        w += (size_t)snprintf(want + w, cap - w, "&p%02d=%d", i, i);
    check_n(&jup, q, n, want);
    free(q);
    free(want);
}

static void test_path_normalize(void **state)
{
    check_path("/a%2fb/%7Euser/%41", "/a%2Fb/~user/A");
    check_path("/a b/\xc3\xa9", "/a%20b/%C3%A9");
    check_path("/a+b;c=d,e/!$&'()*:@", "/a+b;c=d,e/!$&'()*:@");
    check_path("/%/%4/%zz/%3b", "/%25/%254/%25zz/%3B");
    check_path("/?#\"<>", "/%3F%23%22%3C%3E");
    check_path("", "");
}

static void test_build_price(void **state)
{
    check_key("GET", "/jup", "/price/v3?ids=B,A,A", "GET /jup/price/v3?ids=A,B");
    check_key("GET", "/jup", "/price/v3?ids=A%2CB", "GET /jup/price/v3?ids=A,B");
    check_key("HEAD", "/jup", "/price/v3?ids=A,B", "GET /jup/price/v3?ids=A,B");
    check_key("POST", "/jup", "/swap/v1/swap", "POST /jup/swap/v1/swap");
}

static void test_build_prefix(void **state)
{
    check_key("GET", "/", "/x", "GET /x");
    check_key("GET", "", "/x", "GET /x");
    check_key("GET", NULL, "/x", "GET /x");
    check_key("GET", "/jup/", "/x", "GET /jup/x");
    check_key("GET", "/jup", "x", "GET /jup/x"); /* lenient: a relative pq gets its '/' */
}

static void test_build_pq_forms(void **state)
{
    check_key("GET", "/jup", "", "GET /jup/");
    check_key("GET", "/jup", "/", "GET /jup/");
    check_key("GET", "/", "", "GET /");
    check_key("GET", "/", "?b=2&a=1", "GET /?a=1&b=2");
    check_key("GET", "/m", "/pair/all?", "GET /m/pair/all");
    check_key("GET", "/m", "/pair/all?&&utm_source=z", "GET /m/pair/all");
    check_key("GET", "/m", "/p%7e?q=a?b", "GET /m/p~?q=a%3Fb");
}

static void test_build_bound(void **state)
{
    const char *pq = "/\xff?\xff\xff=\xff";
    size_t bound = dc_cache_key_bound(4, 2, strlen(pq));
    char out[64];
    long n = dc_cache_key_build("HEAD", 4, "/\xff", pq, strlen(pq), NULL, out, bound);
    assert_string_equal(out, "GET /%FF/%FF?%FF%FF=%FF");
    assert_true(n >= 0 && (size_t)n < bound);
    assert_int_equal(dc_cache_key_build("HEAD", 4, "/\xff", pq, strlen(pq), NULL, out, (size_t)n), DC_ETOOBIG);
    assert_int_equal(dc_cache_key_bound(1, 1, SIZE_MAX / 2), SIZE_MAX); /* saturates */
}

static void test_query_param(void **state)
{
    const char *q = "a=1&ids=B%2CA&ids=z&flag&sp=Orca+V2&i%64x=enc&n=x%00y";
    char out[16];
    assert_int_equal(dc_cache_query_param(q, strlen(q), "ids", out, sizeof(out)), 3);
    assert_string_equal(out, "B,A"); /* first occurrence, decoded */
    assert_int_equal(dc_cache_query_param(q, strlen(q), "flag", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(dc_cache_query_param(q, strlen(q), "sp", out, sizeof(out)), 7);
    assert_string_equal(out, "Orca V2");
    assert_int_equal(dc_cache_query_param(q, strlen(q), "idx", out, sizeof(out)), 3);
    assert_string_equal(out, "enc");
    assert_int_equal(dc_cache_query_param(q, strlen(q), "n", out, sizeof(out)), 3);
    assert_memory_equal(out, "x\0y", 4);
    assert_int_equal(dc_cache_query_param(q, strlen(q), "missing", out, sizeof(out)), -1);
    assert_int_equal(dc_cache_query_param(q, strlen(q), "id", out, sizeof(out)), -1);
    assert_int_equal(dc_cache_query_param(q, strlen(q), "sp", out, 7), DC_ETOOBIG);
    assert_int_equal(dc_cache_query_param("", 0, "a", out, sizeof(out)), -1);
}

static void test_query_only(void **state)
{
    (void)state;
    const char *q1 = "ids=A,B&&ids=C&";
    assert_true(dc_cache_query_only(q1, strlen(q1), "ids")); /* empty parameters do not count */
    assert_true(dc_cache_query_only("", 0, "ids"));
    assert_true(dc_cache_query_only("ids", 3, "ids"));     /* a bare name */
    assert_true(dc_cache_query_only("i%64s=A", 7, "ids")); /* names compare decoded */
    assert_false(dc_cache_query_only("ids=A&x=1", 9, "ids"));
    assert_false(dc_cache_query_only("idsx=A", 6, "ids"));
    assert_false(dc_cache_query_only("id=A", 4, "ids"));
    assert_false(dc_cache_query_only("x", 1, "ids"));
}

/* Deterministic base58-looking mint (32..44 chars). */
static void fake_mint(unsigned seed, char *out)
{
    static const char b58[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    unsigned x = seed * 2654435761u + 12345u;
    size_t len = 32 + seed % 13;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        out[i] = b58[(x >> 16) % 58];
    }
    out[len] = '\0';
}

/* "ids=" + n mints in the order given by `perm` (NULL: seed order); returns the length. */
static size_t price_query(char *q, size_t cap, unsigned n, const unsigned *perm)
{
    size_t len = (size_t)snprintf(q, cap, "ids=");
    for (unsigned i = 0; i < n; i++) {
        char m[48];
        fake_mint(perm != NULL ? perm[i] : i, m);
        len += (size_t)snprintf(q + len, cap - len, "%s%s", i == 0 ? "" : ",", m);
    }
    return len;
}

static void test_price_50_ids_any_order(void **state)
{
    unsigned perm[50];
    for (unsigned i = 0; i < 50; i++)
        perm[i] = (i * 17 + 3) % 50; /* 17 is coprime with 50: a permutation */
    char a[4096], b[4096], na[4096], nb[4096];
    size_t la = price_query(a, sizeof(a), 50, NULL), lb = price_query(b, sizeof(b), 50, perm);
    long n = dc_cache_query_normalize(a, la, &jup, na, sizeof(na));
    assert_true(n > 0);
    assert_int_equal(dc_cache_query_normalize(b, lb, &jup, nb, sizeof(nb)), n);
    assert_string_equal(na, nb);
    assert_int_equal(n, la); /* same ids, only reordered */
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double bench_ns(const char *pq, size_t pqlen)
{
    char out[8192];
    long total = 0, iters = 0;
    double t0 = now_ns(), t;
    do {
        for (int i = 0; i < 1000; i++)
            total += dc_cache_key_build("GET", 3, "/jup", pq, pqlen, &jup, out, sizeof(out));
        iters += 1000;
        t = now_ns();
    } while (t - t0 < 2e8);
    assert_true(total > 0);
    return (t - t0) / (double)iters;
}

static void test_bench(void **state)
{
    char pq[4096];
    memcpy(pq, "/price/v3?", 10);
    size_t len = 10 + price_query(pq + 10, sizeof(pq) - 10, 50, NULL);
    const char *quote = "/swap/v1/quote?inputMint=So11111111111111111111111111111111111111112&outputMint=EPjFWdd5Aufq"
                        "SSqeM2qN1xzybapC8G4wEGGkZwyTDt1v&amount=100000000&slippageBps=50&onlyDirectRoutes=false&"
                        "dexes=Orca+V2,Raydium&maxAccounts=64&swapMode=ExactIn";
    printf("[ BENCH    ] key_build price v3, 50 ids (%zu B): %.0f ns/op\n", len, bench_ns(pq, len));
    printf("[ BENCH    ] key_build quote, 8 params (%zu B): %.0f ns/op\n", strlen(quote),
           bench_ns(quote, strlen(quote)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_param_order),
        cmocka_unit_test(test_duplicates_kept_sorted_by_value),
        cmocka_unit_test(test_plus_is_space),
        cmocka_unit_test(test_comma_outside_key_sets),
        cmocka_unit_test(test_hex_case_and_unreserved),
        cmocka_unit_test(test_malformed_escapes),
        cmocka_unit_test(test_empty_segments),
        cmocka_unit_test(test_without_eq),
        cmocka_unit_test(test_eq_in_value_and_empty_name),
        cmocka_unit_test(test_non_ascii_and_nul),
        cmocka_unit_test(test_sort_is_decoded_byte_order),
        cmocka_unit_test(test_price_ids_set),
        cmocka_unit_test(test_key_set_empty_items),
        cmocka_unit_test(test_key_set_merge),
        cmocka_unit_test(test_key_set_items_encoded),
        cmocka_unit_test(test_upstreams_dexes),
        cmocka_unit_test(test_quote_orders_agree),
        cmocka_unit_test(test_ignore_params),
        cmocka_unit_test(test_option_edge_cases),
        cmocka_unit_test(test_order_invariance),
        cmocka_unit_test(test_toobig),
        cmocka_unit_test(test_heap_fallback),
        cmocka_unit_test(test_path_normalize),
        cmocka_unit_test(test_build_price),
        cmocka_unit_test(test_build_prefix),
        cmocka_unit_test(test_build_pq_forms),
        cmocka_unit_test(test_build_bound),
        cmocka_unit_test(test_query_param),
        cmocka_unit_test(test_query_only),
        cmocka_unit_test(test_price_50_ids_any_order),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
