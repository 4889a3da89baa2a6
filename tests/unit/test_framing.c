/* upstream/framing.h: header lines and the framing verdict of upstream response heads; the cache
 * key's header segments (cache/key.h dc_cache_key_add_header); the request-header classes of
 * http/hop.h used toward upstreams. */
#include "cmocka_prelude.h"

#include <string.h>

#include "cache/key.h"
#include "core/error.h"
#include "http/hop.h"
#include "upstream/framing.h"

/* The verdict for a whole head given as "\n"-separated lines (as libcurl hands them). */
static int verdict(const char *head, dc_framing_t *fr)
{
    dc_framing_init(fr);
    const char *p = head;
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p + 1) : strlen(p);
        dc_hline_t l;
        dc_hline_parse(p, len, &l);
        if (l.kind == DC_HLINE_FIELD)
            dc_framing_field(fr, l.name, l.name_len, l.value, l.value_len);
        else if (l.kind == DC_HLINE_INVALID)
            dc_framing_fail(fr, "malformed header line");
        p += len;
    }
    return dc_framing_finish(fr);
}

static void test_lines(void **state)
{
    (void)state;
    dc_hline_t l;
    dc_hline_parse("HTTP/1.1 204 No Content\r\n", 25, &l);
    assert_int_equal(l.kind, DC_HLINE_STATUS);
    assert_int_equal(l.status, 204);
    assert_int_equal(l.value_len, 10);
    dc_hline_parse("HTTP/2 200 \r\n", 13, &l);
    assert_int_equal(l.status, 200);
    dc_hline_parse("HTTP/1.1 020 OK\r\n", 17, &l);
    assert_int_equal(l.status, 0);
    dc_hline_parse("\r\n", 2, &l);
    assert_int_equal(l.kind, DC_HLINE_END);
    dc_hline_parse("X-Thing:  a b \t\r\n", 17, &l);
    assert_int_equal(l.kind, DC_HLINE_FIELD);
    assert_int_equal(l.name_len, 7);
    assert_int_equal(l.value_len, 3);
    assert_memory_equal(l.value, "a b", 3);
    dc_hline_parse("X-Empty:\r\n", 10, &l);
    assert_int_equal(l.kind, DC_HLINE_FIELD);
    assert_int_equal(l.value_len, 0);
    static const char *const invalid[] = {"Content-Length : 5\r\n", " folded\r\n", "no colon\r\n", ": x\r\n",
                                          "X-Split: a\rb\r\n"};
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        dc_hline_parse(invalid[i], strlen(invalid[i]), &l);
        assert_int_equal(l.kind, DC_HLINE_INVALID);
    }
}

static void test_verdicts(void **state)
{
    (void)state;
    dc_framing_t fr;
    assert_int_equal(verdict("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", &fr), 0);
    assert_int_equal(fr.content_length, 12);
    assert_int_equal(verdict("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\ncontent-length: 5\r\n\r\n", &fr), 0);
    assert_int_equal(fr.content_length, 5);
    assert_int_equal(verdict("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n", &fr), 0);
    assert_true(fr.chunked);
    assert_int_equal(fr.content_length, -1);
    assert_int_equal(verdict("HTTP/1.1 200 OK\r\nX: y\r\n\r\n", &fr), 0); /* read to close */
    static const struct {
        const char *head, *why;
    } bad[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
         "both Content-Length and Transfer-Encoding"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
         "both Content-Length and Transfer-Encoding"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 3\r\n\r\n", "Content-Length values differ"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5, 3\r\n\r\n", "Content-Length values differ"},
        {"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", "Content-Length is not a number"},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length is not a number"},
        {"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", "Content-Length is not a number"},
        {"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", "Content-Length is not a number"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n", "Content-Length is not a number"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding other than chunked"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
         "Transfer-Encoding chunked twice"},
        {"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", "malformed header line"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(verdict(bad[i].head, &fr), DC_EPROTO);
        assert_string_equal(fr.error, bad[i].why);
    }
}

static void test_body(void **state)
{
    (void)state;
    dc_framing_t fr;
    verdict("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", &fr);
    assert_int_equal(dc_framing_body(&fr, 2, false), 0);
    assert_int_equal(dc_framing_body(&fr, 2, true), DC_EPROTO); /* short */
    assert_int_equal(dc_framing_body(&fr, 3, true), 0);
    assert_int_equal(dc_framing_body(&fr, 4, false), DC_EPROTO); /* long */
    verdict("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &fr);
    assert_int_equal(dc_framing_body(&fr, 1000, true), 0);
    assert_false(dc_framing_has_body(200, true));
    assert_false(dc_framing_has_body(204, false));
    assert_false(dc_framing_has_body(304, false));
    assert_true(dc_framing_has_body(404, false));
    const char *excess = "Excess found in a read: excess = 2, size = 3, maxdownload = 3, bytecount = 0\n";
    assert_true(dc_framing_curl_text(excess, strlen(excess)));
    const char *chunk = "Illegal or missing hexadecimal sequence in chunked-encoding\n";
    assert_true(dc_framing_curl_text(chunk, strlen(chunk)));
    const char *other = "Connected to 127.0.0.1 (127.0.0.1) port 80 (#0)\n";
    assert_false(dc_framing_curl_text(other, strlen(other)));
}

static void test_key_header_segment(void **state)
{
    (void)state;
    char out[64];
    size_t n = dc_cache_key_add_header(out, sizeof(out), "x-tenant", 8, "a b%\x01z", 6);
    assert_int_equal(n, 22);
    assert_memory_equal(out, " x-tenant:a%20b%25%01z", 22);
    assert_int_equal(dc_cache_key_add_header(out, 4, "x-tenant", 8, "a", 1), 0);
}

static void test_request_header_classes(void **state)
{
    (void)state;
    static const char *const spoof[] = {"Forwarded",      "X-Forwarded-Host", "x-forwarded-for", "X-Real-IP",
                                        "X-Original-URL", "X-Rewrite-URL",    "True-Client-IP",  "X-Host"};
    for (size_t i = 0; i < sizeof(spoof) / sizeof(spoof[0]); i++)
        assert_true(dc_hop_is_spoofable(spoof[i], strlen(spoof[i])));
    assert_true(dc_hop_is_spoofable("X-Forwarded", 11)); /* the bare name too */
    assert_false(dc_hop_is_spoofable("X-HTTP-Method-Override", 22));
    assert_false(dc_hop_is_spoofable("Accept", 6));
    assert_true(dc_hop_cache_default_forward("Accept", 6));
    assert_true(dc_hop_cache_default_forward("traceparent", 11));
    assert_false(dc_hop_cache_default_forward("Accept-Language", 15));
    assert_false(dc_hop_cache_default_forward("Cookie", 6));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_body),
        cmocka_unit_test(test_key_header_segment),
        cmocka_unit_test(test_request_header_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
