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
    size_t o = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 63; i++)
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

static void test_host_and_folding(void **state)
{
    const char *why = NULL;
    assert_int_equal(head("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", &why), 400);
    assert_string_equal(why, "missing Host header");
    assert_int_equal(head("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n", &why), 0); /* HTTP/1.0 may omit it */
    assert_int_equal(head("GET / HTTP/1.0\r\n\r\n", &why), 0);
    assert_int_equal(head("GET / HTTP/1.1\r\n\r\n", &why), 400);
    assert_int_equal(head("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  continued\r\n\r\n", &why), 400);
    assert_string_equal(why, "obsolete line folding in request headers");
    assert_int_equal(head("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tcontinued\r\n\r\n", &why), 400);
    /* whitespace inside a value is not folding */
    assert_int_equal(head("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1  2\t3\r\n\r\n", &why), 0);
}

static void test_h1_max_headers(void **state)
{
    /* libh2o's fixed array holds 100 lines whatever max_headers says */
    static const dc_reqcheck_limits_t wide = {8192, 1 << 20, 10000};
    const char *why = NULL;
    char buf[8192];
    size_t o = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 99; i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "X-%d: v\r\n", i);
    size_t before_blank = o;
    snprintf(buf + o, sizeof(buf) - o, "\r\n");
    assert_int_equal(dc_reqcheck_h1_head(buf, strlen(buf), &wide, &why), 0);
    o = before_blank + (size_t)snprintf(buf + before_blank, sizeof(buf) - before_blank, "X-last: v\r\n\r\n");
    assert_int_equal(dc_reqcheck_h1_head(buf, o, &wide, &why), 431);
    assert_string_equal(why, "too many request headers");
    assert_int_equal(dc_reqcheck_h1_prefix(buf, o, &wide, &why), 431);
    /* and before the head is complete: the 101st line is enough */
    assert_int_equal(dc_reqcheck_h1_prefix(buf, o - 2, &wide, &why), 431);
    assert_int_equal(dc_reqcheck_h1_prefix(buf, before_blank, &wide, &why), DC_REQCHECK_MORE);
}

static int prefix(const char *s, const char **why)
{
    static const dc_reqcheck_limits_t l = {8192, 16384, 64};
    return dc_reqcheck_h1_prefix(s, strlen(s), &l, why);
}

static void test_prefix(void **state)
{
    const char *why = NULL;
    assert_int_equal(prefix("GET / HTTP/1.1\r\nHost: a\r\n", &why), DC_REQCHECK_MORE);
    assert_int_equal(prefix("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &why), 0);
    assert_int_equal(prefix("GET /", &why), DC_REQCHECK_MORE);
    assert_int_equal(prefix("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &why), 0);
    /* head verdicts other than 431 are the handler's (it knows the request id) */
    assert_int_equal(prefix("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", &why), 0);
    /* a request line that never ends */
    char big[20000];
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET /", 5);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(prefix(big, &why), 414);
    assert_string_equal(why, "request URI too long");
    /* a header block that never ends */
    int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    memset(big + n, 'b', sizeof(big) - (size_t)n - 1);
    assert_int_equal(prefix(big, &why), 431);
    assert_string_equal(why, "request header fields too large");
    /* a chunked body is libh2o's to decode (with the strict decoder): handed on with the head */
    char req[256];
    snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab");
    assert_int_equal(prefix(req, &why), 0);
}

static void norm_ok(const char *in, const char *want)
{
    char out[256];
    size_t n = 0;
    const char *why = NULL;
    assert_int_equal(dc_reqcheck_path(in, strlen(in), out, &n, &why), 0);
    out[n] = '\0';
    assert_string_equal(out, want);
}

static void norm_bad(const char *in, const char *want_why)
{
    char out[256];
    size_t n = 0;
    const char *why = NULL;
    assert_int_equal(dc_reqcheck_path(in, strlen(in), out, &n, &why), 400);
    assert_string_equal(why, want_why);
}

static void test_path(void **state)
{
    norm_ok("/", "/");
    norm_ok("/jup/price/v3?ids=a,b", "/jup/price/v3?ids=a,b");
    norm_ok("/b/../o/x", "/o/x");
    norm_ok("/b/%2e%2e/o/x", "/o/x");
    norm_ok("/b/.%2E/o/x", "/o/x");
    norm_ok("/a/./b/.", "/a/b/");
    norm_ok("/a/%2e/b", "/a/b");
    norm_ok("//a//b//", "/a/b/");
    norm_ok("/a/..", "/");
    norm_ok("/a/b/../../c", "/c");
    norm_ok("/a/.../b", "/a/.../b"); /* three dots is a name */
    norm_ok("/a/%2e%2e%2e/b", "/a/%2e%2e%2e/b");
    norm_ok("/a/.b/..c", "/a/.b/..c");
    norm_ok("/a%2Fb?x=/../%", "/a%2Fb?x=/../%"); /* the query is not a path */
    norm_ok("/a?", "/a?");
    norm_bad("/..", "path climbs above the root");
    norm_bad("/%2e%2e/", "path climbs above the root");
    norm_bad("/a/../..", "path climbs above the root");
    norm_bad("/a%00b", "NUL byte in path");
    norm_bad("/a%", "malformed percent-encoding in path");
    norm_bad("/a%2", "malformed percent-encoding in path");
    norm_bad("/a%zz", "malformed percent-encoding in path");
    norm_bad("/100%/x", "malformed percent-encoding in path");
    norm_bad("*", "request target is not an absolute path");
    norm_bad("http://a/b", "request target is not an absolute path");
    norm_bad("", "request target is not an absolute path");
    norm_bad("?x", "request target is not an absolute path");
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
    assert_string_equal(buf,
                        "{\"error\":\"upstream \\\"x\\\" failed\\u000a\",\"status\":502,\"request_id\":\"rid-1\"}");
    assert_int_equal(n, strlen(buf));
    dc_error_json(buf, sizeof(buf), 404, "no route", NULL);
    assert_string_equal(buf, "{\"error\":\"no route\",\"status\":404}");
    assert_string_equal(dc_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(dc_http_reason(599), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_methods),        cmocka_unit_test(test_uri),
        cmocka_unit_test(test_clean_head),     cmocka_unit_test(test_smuggling),
        cmocka_unit_test(test_header_limits),  cmocka_unit_test(test_hop),
        cmocka_unit_test(test_error_json),     cmocka_unit_test(test_host_and_folding),
        cmocka_unit_test(test_h1_max_headers), cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
