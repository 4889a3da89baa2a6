/* Unit tests for upstream/retry.c: the pure retry decisions of an upstream fetch (which answers and
 * transport failures are retried, how many times, the backoff with injected randomness, a 429's
 * pause from Retry-After / x-ratelimit-reset and whether it fits before the deadline). */
#include "cmocka_prelude.h"

#include "upstream/retry.h"

#include <curl/curl.h>
#include <string.h>

static dc_fetch_header_t hdr(const char *name, const char *value)
{
    dc_fetch_header_t h = {(char *)name, strlen(name), (char *)value, strlen(value)};
    return h;
}

static void test_allowed(void **state)
{
    /* retries = 2: attempts 1 and 2 may be followed by another, attempt 3 may not */
    assert_true(dc_retry_allowed(true, 1, 2, false));
    assert_true(dc_retry_allowed(true, 2, 2, false));
    assert_false(dc_retry_allowed(true, 3, 2, false));
    assert_false(dc_retry_allowed(true, 1, 0, false));  /* retries: 0 */
    assert_false(dc_retry_allowed(false, 1, 2, false)); /* POST and friends: never */
    assert_false(dc_retry_allowed(true, 1, 2, true));   /* the caller went away */
}

static void test_status_and_curl_codes(void **state)
{
    for (int s = 100; s < 600; s++)
        assert_int_equal(dc_retry_status(s), s == 502 || s == 503 || s == 504);
    int yes[] = {CURLE_COULDNT_CONNECT, CURLE_GOT_NOTHING, CURLE_RECV_ERROR,  CURLE_SEND_ERROR,
                 CURLE_PARTIAL_FILE,    CURLE_HTTP2,       CURLE_HTTP2_STREAM};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(dc_retry_curl_code(yes[i]));
    int no[] = {CURLE_OK,
                CURLE_OPERATION_TIMEDOUT,
                CURLE_COULDNT_RESOLVE_HOST,
                CURLE_SSL_CONNECT_ERROR,
                CURLE_WEIRD_SERVER_REPLY,
                CURLE_WRITE_ERROR,
                CURLE_ABORTED_BY_CALLBACK};
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(dc_retry_curl_code(no[i]));
}

static void test_backoff(void **state)
{
    /* draw 500 -> jitter exactly 1.0: base * 2^(n-1) */
    assert_int_equal(dc_retry_backoff_ms(100, 1, 500), 100);
    assert_int_equal(dc_retry_backoff_ms(100, 2, 500), 200);
    assert_int_equal(dc_retry_backoff_ms(100, 3, 500), 400);
    /* the exponent stops at 10 */
    assert_int_equal(dc_retry_backoff_ms(100, 11, 500), 102400);
    assert_int_equal(dc_retry_backoff_ms(100, 40, 500), 102400);
    /* jitter bounds: [0.5, 1.5) of the step, from the draw modulo 1000 */
    assert_int_equal(dc_retry_backoff_ms(100, 1, 0), 50);
    assert_int_equal(dc_retry_backoff_ms(100, 1, 999), 149);
    assert_int_equal(dc_retry_backoff_ms(100, 1, 1000), 50);
    assert_int_equal(dc_retry_backoff_ms(100, 1, 2147483647L), 114); /* 647: 1.147 */
    assert_int_equal(dc_retry_backoff_ms(100, 1, -1), 149);          /* never outside the range */
    for (long d = 0; d < 5000; d += 7) {
        uint64_t v = dc_retry_backoff_ms(1000, 2, d);
        assert_true(v >= 1000 && v < 3000);
    }
    assert_int_equal(dc_retry_backoff_ms(0, 3, 123), 0);     /* no backoff configured */
    assert_int_equal(dc_retry_backoff_ms(100, 0, 500), 100); /* defensive: attempt 0 is attempt 1 */
}

static void test_fits(void **state)
{
    assert_true(dc_retry_fits(1000, 499, 1500));
    assert_false(dc_retry_fits(1000, 500, 1500)); /* ending at the deadline is too late */
    assert_false(dc_retry_fits(1000, 600, 1500));
    assert_true(dc_retry_fits(1000, 0, 1001));
}

static void test_retry_after(void **state)
{
    uint64_t now = 1700000000123ull; /* wall ms */
    dc_fetch_header_t h[3];
    h[0] = hdr("retry-after", "3");
    assert_int_equal(dc_retry_after_us(h, 1, now), 3000000);
    h[0] = hdr("retry-after", "0");
    assert_int_equal(dc_retry_after_us(h, 1, now), 0);
    /* an HTTP date 10 s ahead (whole seconds) */
    h[0] = hdr("retry-after", "Tue, 14 Nov 2023 22:13:30 GMT"); /* 1700000010 */
    assert_int_equal(dc_retry_after_us(h, 1, now), 10000000);
    h[0] = hdr("retry-after", "Tue, 14 Nov 2023 22:13:10 GMT"); /* in the past */
    assert_int_equal(dc_retry_after_us(h, 1, now), 0);
    h[0] = hdr("retry-after", "soon");
    assert_int_equal(dc_retry_after_us(h, 1, now), 0);
    /* x-ratelimit-reset: absolute Unix seconds, to the millisecond */
    h[0] = hdr("x-ratelimit-reset", "1700000002");
    assert_int_equal(dc_retry_after_us(h, 1, now), 1877000);
    h[0] = hdr("x-ratelimit-reset", "1699999999");
    assert_int_equal(dc_retry_after_us(h, 1, now), 0);
    /* Retry-After wins over x-ratelimit-reset, whatever the order */
    h[0] = hdr("x-ratelimit-reset", "1700000002");
    h[1] = hdr("content-type", "application/json");
    h[2] = hdr("retry-after", "7");
    assert_int_equal(dc_retry_after_us(h, 3, now), 7000000);
    assert_int_equal(dc_retry_after_us(h + 1, 1, now), 0);
    assert_int_equal(dc_retry_after_us(NULL, 0, now), 0);
    /* the pause: what it said, else 1 s */
    assert_int_equal(dc_retry_429_pause_ms(0), 1000);
    assert_int_equal(dc_retry_429_pause_ms(1877000), 1877);
}

static dc_retry_head_t on_head(int status, bool key_rejected, size_t usable, bool may, uint64_t ra, uint64_t now,
                               uint64_t deadline, uint64_t *pause)
{
    dc_retry_head_in_t in = {status, key_rejected, usable, may, ra, now, deadline};
    return dc_retry_on_head(&in, pause);
}

static void test_on_head(void **state)
{
    uint64_t p = 99;
    assert_int_equal(on_head(200, false, 0, true, 0, 0, 10000, &p), DC_RETRY_DELIVER);
    assert_int_equal(p, 0);
    assert_int_equal(on_head(500, false, 0, true, 0, 0, 10000, &p), DC_RETRY_DELIVER); /* 500: the answer */
    assert_int_equal(on_head(503, false, 0, true, 0, 0, 10000, &p), DC_RETRY_AGAIN);
    assert_int_equal(on_head(503, false, 0, false, 0, 0, 10000, &p), DC_RETRY_DELIVER); /* no retry left */
    /* a rejected key: retried with another one only if one is usable */
    assert_int_equal(on_head(401, true, 1, true, 0, 0, 10000, &p), DC_RETRY_AGAIN);
    assert_int_equal(on_head(403, true, 0, true, 0, 0, 10000, &p), DC_RETRY_DELIVER);
    assert_int_equal(on_head(401, false, 3, true, 0, 0, 10000, &p), DC_RETRY_DELIVER); /* no key was sent */
    assert_int_equal(on_head(401, true, 2, false, 0, 0, 10000, &p), DC_RETRY_DELIVER);
    /* 429: after its pause when that ends before the deadline */
    assert_int_equal(on_head(429, false, 0, true, 2000000, 1000, 3001, &p), DC_RETRY_AFTER_PAUSE);
    assert_int_equal(p, 2000);
    assert_int_equal(on_head(429, false, 0, true, 2000000, 1000, 3000, &p), DC_RETRY_DELIVER);
    assert_int_equal(p, 0);
    assert_int_equal(on_head(429, false, 0, true, 0, 1000, 2001, &p), DC_RETRY_AFTER_PAUSE); /* unknown: 1 s */
    assert_int_equal(p, 1000);
    assert_int_equal(on_head(429, false, 0, true, 0, 1000, 2000, &p), DC_RETRY_DELIVER);
    assert_int_equal(on_head(429, false, 0, false, 0, 0, 100000, &p), DC_RETRY_DELIVER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allowed), cmocka_unit_test(test_status_and_curl_codes), cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_fits),    cmocka_unit_test(test_retry_after),           cmocka_unit_test(test_on_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
