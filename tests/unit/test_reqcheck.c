#include "cmocka_prelude.h"

#include <stdio.h>
#include <string.h>

#include "http/hop.h"
#include "http/reqcheck.h"
#include "http/respond.h"

static const dc_reqcheck_limits_t limits = {8192, 16384, 64};

static int head(const char *s, const char **why)
{
    return dc_reqcheck_h1_head(s, strlen(s), &limits, why);
}

static void test_methods(void **state)
{
    const char *why = NULL;
    assert_int_equal(dc_reqcheck_method("GET", 3, &why), 0);
    assert_int_equal(dc_reqcheck_method("HEAD", 4, &why), 0);
    assert_int_equal(dc_reqcheck_method("POST", 4, &why), 0);
    assert_int_equal(dc_reqcheck_method("OPTIONS", 7, &why), 0);
    assert_int_equal(dc_reqcheck_method("TRACE", 5, &why), 405);
    assert_int_equal(dc_reqcheck_method("CONNECT", 7, &why), 405);
    assert_int_equal(dc_reqcheck_method("FOO", 3, &why), 405);
    assert_int_equal(dc_reqcheck_method("get", 3, &why), 405); /* methods are case-sensitive */
    assert_int_equal(dc_reqcheck_method("GETX", 3, &why), 0);  /* length-bounded compare */
    assert_string_equal(why, "method not allowed");
}

static void test_uri(void **state)
{
    const char *why = NULL;
    assert_int_equal(dc_reqcheck_uri(8192, &limits, &why), 0);
    assert_int_equal(dc_reqcheck_uri(8193, &limits, &why), 414);
}

static void test_clean_head(void **state)
{
    const char *why = NULL;
    assert_int_equal(head("GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n", &why), 0);
    assert_int_equal(head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", &why), 0);
    assert_int_equal(head("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", &why), 0);
    /* bare LF line endings are tolerated like picohttpparser does */
    assert_int_equal(head("GET / HTTP/1.1\nHost: a\n\n", &why), 0);
}

static void test_smuggling(void **state)
{
    const char *why = NULL;
    assert_int_equal(head("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", &why), 400);
    assert_string_equal(why, "more than one Host header");
    assert_int_equal(head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", &why),
                     400);
    assert_string_equal(why, "more than one Content-Length header");
    assert_int_equal(
        head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", &why), 400);
    assert_string_equal(why, "both Content-Length and Transfer-Encoding");
    assert_int_equal(head("GET / HTTP/1.1\r\nHost: a\r\n", &why), 400); /* no blank line */
}

static void test_header_limits(void **state)
{
    const char *why = NULL;
    char buf[40000];
    size_t o = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 64; i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "X-H%d: v\r\n", i);
    snprintf(buf + o, sizeof(buf) - o, "\r\n");
    assert_int_equal(head(buf, &why), 0);
    o = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 65; i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "X-H%d: v\r\n", i);
    snprintf(buf + o, sizeof(buf) - o, "\r\n");
    assert_int_equal(head(buf, &why), 431);
    assert_string_equal(why, "too many request headers");
    /* one 17 KiB header */
    o = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX-Big: ");
    memset(buf + o, 'a', 17 * 1024);
    o += 17 * 1024;
    snprintf(buf + o, sizeof(buf) - o, "\r\n\r\n");
    assert_int_equal(head(buf, &why), 431);
    assert_string_equal(why, "request header fields too large");
    assert_int_equal(dc_reqcheck_header_totals(10, 100, &limits, &why), 0);
    assert_int_equal(dc_reqcheck_header_totals(65, 100, &limits, &why), 431);
}

static void test_hop(void **state)
{
    assert_true(dc_hop_is_hop_by_hop("Connection", 10));
    assert_true(dc_hop_is_hop_by_hop("transfer-encoding", 17));
    assert_true(dc_hop_is_hop_by_hop("TE", 2));
    assert_false(dc_hop_is_hop_by_hop("content-type", 12));
    assert_false(dc_hop_is_hop_by_hop("tex", 3));
    const char *v = "keep-alive, X-Secret ,close";
    assert_true(dc_hop_listed_in_connection(v, strlen(v), "x-secret", 8));
    assert_true(dc_hop_listed_in_connection(v, strlen(v), "close", 5));
    assert_false(dc_hop_listed_in_connection(v, strlen(v), "x-secre", 7));
    assert_false(dc_hop_listed_in_connection("", 0, "x", 1));
}

static void test_error_json(void **state)
{
    char buf[256];
    size_t n = dc_error_json(buf, sizeof(buf), 502, "upstream \"x\" failed\n", "rid-1");
    assert_string_equal(buf, "{\"error\":\"upstream \\\"x\\\" failed\\u000a\",\"status\":502,\"request_id\":\"rid-1\"}");
    assert_int_equal(n, strlen(buf));
    dc_error_json(buf, sizeof(buf), 404, "no route", NULL);
    assert_string_equal(buf, "{\"error\":\"no route\",\"status\":404}");
    assert_string_equal(dc_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(dc_http_reason(599), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_methods),       cmocka_unit_test(test_uri),           cmocka_unit_test(test_clean_head),
        cmocka_unit_test(test_smuggling),     cmocka_unit_test(test_header_limits), cmocka_unit_test(test_hop),
        cmocka_unit_test(test_error_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
