/* The strict chunked-body decoder that replaces libh2o's (http/h1chunked.c): what RFC 9112 7.1
 * allows decodes exactly; every lenient form picohttpparser accepted is refused. */
#include "cmocka_prelude.h"

#include <string.h>

#include "http/h1chunked.h"

static int decode(const char *in, char *out, size_t *outlen, size_t *rest)
{
    return dc_h1chunked_decode(in, strlen(in), out, outlen, rest);
}

static void test_valid(void **state)
{
    (void)state;
    char out[256];
    size_t n, rest;
    assert_int_equal(decode("4\r\nabcd\r\n0\r\n\r\n", out, &n, &rest), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "abcd", 4);
    assert_int_equal(rest, 0);
    /* extensions, whitespace before them, upper-case hex, trailers, and bytes after the end */
    assert_int_equal(
        decode("A ;a=1;b=\"x y\"\r\n0123456789\r\n3\t;e\r\nxyz\r\n0\r\nT: 1\r\nU: 2\r\n\r\nGET", out, &n, &rest), 0);
    assert_int_equal(n, 13);
    assert_memory_equal(out, "0123456789xyz", 13);
    assert_int_equal(rest, 3);
}

static void test_incomplete(void **state)
{
    (void)state;
    char out[64];
    size_t n, rest;
    assert_int_equal(decode("4\r\nab", out, &n, &rest), 1);
    assert_int_equal(decode("4\r\nabcd\r", out, &n, &rest), 1);
    assert_int_equal(decode("4\r\nabcd\r\n0\r\n", out, &n, &rest), 1);
    assert_int_equal(decode("4\r\nabcd\r\n0\r\n\r", out, &n, &rest), 1);
}

static void test_lenient_forms_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "4\nabcd\r\n0\r\n\r\n",         /* bare LF after the size */
        "4;x\nabcd\r\n0\r\n\r\n",       /* bare LF after an extension */
        "4\r\nabcd\n0\r\n\r\n",         /* bare LF after the data */
        "4\r\nabcd\r\r\n0\r\n\r\n",     /* CR CR LF after the data */
        "4\r\nabcdX\r\n0\r\n\r\n",      /* more data than the size */
        "4\r\nabcd\r\n0\n\r\n",         /* bare LF after the last chunk */
        "4\r\nabcd\r\n0\r\n\n",         /* bare LF ending the trailers */
        "4\r\nabcd\r\n0\r\nT: 1\n\r\n", /* bare-LF trailer line */
        "4\rx\nabcd\r\n0\r\n\r\n",      /* CR not followed by LF */
        "4 x\x01\r\nabcd\r\n0\r\n\r\n", /* control character in an extension */
        "4x\r\nabcd\r\n0\r\n\r\n",      /* garbage after the size */
        "-4\r\nabcd\r\n0\r\n\r\n",      /* not hex */
        "\r\nabcd\r\n0\r\n\r\n",        /* no size */
        "10000000000000000\r\n",        /* 17 hex digits: overflow */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[64];
        size_t n, rest;
        if (decode(bad[i], out, &n, &rest) != -1)
            fail_msg("accepted: %zu", i);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_incomplete),
        cmocka_unit_test(test_lenient_forms_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
