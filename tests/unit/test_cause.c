/* Unit tests for upstream/cause.c (the cause of an upstream failure from libcurl's code, errno and
 * our flags; what the client is told for it; the error text without secrets) and for the error
 * log's rate limit and the last error in upstream/upstream_state.c (injected clock). */
#include "cmocka_prelude.h"

#include "upstream/cause.h"
#include "upstream/upstream_state.h"
#include "http/respond.h"

#include <curl/curl.h>
#include <errno.h>
#include <string.h>

static void test_classify(void **state)
{
    (void)state;
    assert_int_equal(dc_upstream_cause_classify(CURLE_COULDNT_RESOLVE_HOST, 0, 0), DC_CAUSE_DNS);
    assert_int_equal(dc_upstream_cause_classify(CURLE_COULDNT_RESOLVE_PROXY, 0, 0), DC_CAUSE_DNS);
    int tls[] = {CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM,
                 CURLE_SSL_CIPHER,        CURLE_SSL_CACERT_BADFILE,       CURLE_SSL_PINNEDPUBKEYNOTMATCH};
    for (size_t i = 0; i < sizeof(tls) / sizeof(tls[0]); i++)
        assert_int_equal(dc_upstream_cause_classify(tls[i], 0, 0), DC_CAUSE_TLS);
    assert_int_equal(dc_upstream_cause_classify(CURLE_COULDNT_CONNECT, ECONNREFUSED, 0), DC_CAUSE_CONNECT);
    assert_int_equal(dc_upstream_cause_classify(CURLE_COULDNT_CONNECT, 0, 0), DC_CAUSE_CONNECT);
    assert_int_equal(dc_upstream_cause_classify(CURLE_COULDNT_CONNECT, ETIMEDOUT, 0), DC_CAUSE_TIMEOUT);
    assert_int_equal(dc_upstream_cause_classify(CURLE_RECV_ERROR, ECONNRESET, 0), DC_CAUSE_RESET);
    assert_int_equal(dc_upstream_cause_classify(CURLE_SEND_ERROR, EPIPE, 0), DC_CAUSE_RESET);
    assert_int_equal(dc_upstream_cause_classify(CURLE_GOT_NOTHING, 0, 0), DC_CAUSE_RESET);
    assert_int_equal(dc_upstream_cause_classify(CURLE_PARTIAL_FILE, 0, 0), DC_CAUSE_RESET);
    assert_int_equal(dc_upstream_cause_classify(CURLE_HTTP2_STREAM, 0, 0), DC_CAUSE_RESET);
    assert_int_equal(dc_upstream_cause_classify(CURLE_OPERATION_TIMEDOUT, 0, 0), DC_CAUSE_TIMEOUT);
    /* our own deadline wins over whatever curl was doing; framing before the transport code */
    assert_int_equal(dc_upstream_cause_classify(CURLE_OK, 0, DC_CAUSE_F_DEADLINE), DC_CAUSE_TIMEOUT);
    assert_int_equal(dc_upstream_cause_classify(CURLE_RECV_ERROR, 0, DC_CAUSE_F_DEADLINE), DC_CAUSE_TIMEOUT);
    assert_int_equal(dc_upstream_cause_classify(CURLE_OK, 0, DC_CAUSE_F_FRAMING), DC_CAUSE_PROTO);
    assert_int_equal(dc_upstream_cause_classify(CURLE_WEIRD_SERVER_REPLY, 0, 0), DC_CAUSE_PROTO);
    /* a body shorter than its head said, once the head went out: a framing lie, not a reset */
    assert_int_equal(dc_upstream_cause_classify(CURLE_PARTIAL_FILE, 0, DC_CAUSE_F_HEAD), DC_CAUSE_PROTO);
    assert_int_equal(dc_upstream_cause_classify(CURLE_OK, 0, DC_CAUSE_F_HEAD), DC_CAUSE_NONE);
    assert_int_equal(dc_upstream_cause_classify(CURLE_OK, 0, 0), DC_CAUSE_OTHER);
    assert_int_equal(dc_upstream_cause_classify(CURLE_URL_MALFORMAT, 0, 0), DC_CAUSE_OTHER);
}

static void test_what_the_client_is_told(void **state)
{
    (void)state;
    assert_string_equal(dc_upstream_cause_name(DC_CAUSE_DNS), "dns");
    assert_string_equal(dc_upstream_cause_message(DC_CAUSE_DNS), "upstream dns failure");
    assert_string_equal(dc_upstream_cause_message(DC_CAUSE_TLS), "upstream tls failure");
    assert_string_equal(dc_upstream_cause_message(DC_CAUSE_CONNECT), "upstream connection refused");
    assert_string_equal(dc_upstream_cause_message(DC_CAUSE_RESET), "upstream connection reset");
    assert_string_equal(dc_upstream_cause_message(DC_CAUSE_TIMEOUT), "upstream timed out");
    assert_string_equal(dc_upstream_cause_message(DC_CAUSE_PROTO), "upstream sent an invalid response");
    for (int c = 0; c < DC_CAUSE_COUNT; c++)
        assert_int_equal(dc_upstream_cause_status((dc_upstream_cause_t)c), c == DC_CAUSE_TIMEOUT ? 504 : 502);
    /* Retry-After: when the same request may well work in a moment */
    assert_true(dc_upstream_cause_retry_after_s(DC_CAUSE_DNS) > 0);
    assert_true(dc_upstream_cause_retry_after_s(DC_CAUSE_CONNECT) > 0);
    assert_true(dc_upstream_cause_retry_after_s(DC_CAUSE_RESET) > 0);
    assert_true(dc_upstream_cause_retry_after_s(DC_CAUSE_TIMEOUT) > 0);
    assert_int_equal(dc_upstream_cause_retry_after_s(DC_CAUSE_TLS), 0);
    assert_int_equal(dc_upstream_cause_retry_after_s(DC_CAUSE_PROTO), 0);
    assert_int_equal(dc_upstream_cause_retry_after_s(DC_CAUSE_OTHER), 0);
    assert_string_equal(dc_upstream_cause_name((dc_upstream_cause_t)99), "other"); /* out of range */
}

static void test_error_json(void **state)
{
    (void)state;
    char buf[512];
    dc_error_json_upstream(buf, sizeof(buf), 502, "upstream dns failure", "jupiter", "Could not resolve host: \"x\"",
                           "rid1");
    assert_string_equal(buf, "{\"error\":\"upstream dns failure\",\"status\":502,\"upstream\":\"jupiter\","
                             "\"cause\":\"Could not resolve host: \\\"x\\\"\",\"request_id\":\"rid1\"}");
    /* without upstream and cause: the shape every other error has */
    dc_error_json(buf, sizeof(buf), 504, "upstream timed out", "rid2");
    assert_string_equal(buf, "{\"error\":\"upstream timed out\",\"status\":504,\"request_id\":\"rid2\"}");
    dc_error_json(buf, sizeof(buf), 400, "bad", NULL);
    assert_string_equal(buf, "{\"error\":\"bad\",\"status\":400}");
    /* truncated, still NUL-terminated within the buffer */
    char small[20];
    size_t n = dc_error_json_upstream(small, sizeof(small), 502, "upstream dns failure", "jupiter", "x", "r");
    assert_int_equal(n, strlen(small));
    assert_true(n < sizeof(small));
}

static void scrubbed(const char *in, const char *const *secrets, size_t n, const char *want)
{
    char out[DC_CAUSE_TEXT_MAX];
    size_t len = dc_upstream_cause_scrub(out, sizeof(out), in, secrets, n);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
}

static void test_scrub(void **state)
{
    (void)state;
    scrubbed("Could not resolve host: nosuch.invalid", NULL, 0, "Could not resolve host: nosuch.invalid");
    /* query, fragment and userinfo of a URL go */
    scrubbed("URL rejected: https://user:pw@api.example/v1/price?ids=1&api-key=SEKRET#frag now", NULL, 0,
             "URL rejected: https://api.example/v1/price now");
    scrubbed("bad /price?api-key=SEKRET", NULL, 0, "bad /price");
    /* key values and header values given as secrets, wherever they show */
    const char *secrets[] = {"k-SEKRET-1", "abc", NULL, "Bearer xyz123"};
    scrubbed("header x-api-key: k-SEKRET-1 refused; auth Bearer xyz123; abc stays", secrets, 4,
             "header x-api-key: *** refused; auth ***; abc stays");
    /* control characters become spaces; trailing blanks go */
    scrubbed("line one\r\nline two\n\n", NULL, 0, "line one  line two");
    scrubbed("", NULL, 0, "");
    scrubbed(NULL, NULL, 0, "");
    /* bounded by the destination */
    char small[8];
    assert_int_equal(dc_upstream_cause_scrub(small, sizeof(small), "0123456789abcdef", NULL, 0), 7);
    assert_string_equal(small, "0123456");
}

static void test_log_gate(void **state)
{
    (void)state;
    dc_upstream_state_t s;
    memset(&s, 0, sizeof(s));
    uint64_t sup = 99;
    /* the first line of a cause is written; the next ones in the window are counted */
    assert_true(dc_upstream_state_log_gate(&s, DC_CAUSE_DNS, 1000, 10000, &sup));
    assert_int_equal(sup, 0);
    for (int i = 0; i < 5; i++)
        assert_false(dc_upstream_state_log_gate(&s, DC_CAUSE_DNS, 2000 + (uint64_t)i, 10000, &sup));
    /* another cause has its own window */
    assert_true(dc_upstream_state_log_gate(&s, DC_CAUSE_RESET, 2500, 10000, &sup));
    assert_int_equal(sup, 0);
    assert_false(dc_upstream_state_log_gate(&s, DC_CAUSE_DNS, 10999, 10000, &sup));
    /* the window is over: the next line says how many were left out */
    assert_true(dc_upstream_state_log_gate(&s, DC_CAUSE_DNS, 11000, 10000, &sup));
    assert_int_equal(sup, 6);
    assert_false(dc_upstream_state_log_gate(&s, DC_CAUSE_DNS, 11001, 10000, &sup));
    assert_true(dc_upstream_state_log_gate(&s, DC_CAUSE_DNS, 30000, 10000, &sup));
    assert_int_equal(sup, 1);
    /* a monotonic clock at 0 still opens a window */
    dc_upstream_state_t z;
    memset(&z, 0, sizeof(z));
    assert_true(dc_upstream_state_log_gate(&z, DC_CAUSE_TLS, 0, 10000, &sup));
    assert_false(dc_upstream_state_log_gate(&z, DC_CAUSE_TLS, 5, 10000, &sup));
}

static void test_last_error(void **state)
{
    (void)state;
    dc_upstream_state_t s, t;
    memset(&s, 0, sizeof(s));
    memset(&t, 0, sizeof(t));
    dc_upstream_cause_t c;
    char buf[DC_CAUSE_TEXT_MAX];
    uint64_t at;
    assert_false(dc_upstream_state_last_error(&s, &c, buf, sizeof(buf), &at));
    dc_upstream_state_note_error(&s, DC_CAUSE_DNS, "Could not resolve host: x.invalid", 1700000000123ull);
    dc_upstream_state_note_error(&s, DC_CAUSE_CONNECT, "Failed to connect", 1700000001000ull);
    assert_true(dc_upstream_state_last_error(&s, &c, buf, sizeof(buf), &at));
    assert_int_equal(c, DC_CAUSE_CONNECT);
    assert_string_equal(buf, "Failed to connect");
    assert_int_equal(at, 1700000001000ull);
    dc_upstream_state_inherit_error(&t, &s); /* a reload keeps it */
    assert_true(dc_upstream_state_last_error(&t, &c, buf, sizeof(buf), &at));
    assert_int_equal(c, DC_CAUSE_CONNECT);
    assert_int_equal(at, 1700000001000ull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),   cmocka_unit_test(test_what_the_client_is_told),
        cmocka_unit_test(test_scrub),      cmocka_unit_test(test_log_gate),
        cmocka_unit_test(test_last_error), cmocka_unit_test(test_error_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
