#include "cmocka_prelude.h"

#include <string.h>

#include "sse/event.h"

static void expect(dc_sse_event_t *e, const char *want)
{
    assert_int_equal(e->len, strlen(want));
    assert_memory_equal(e->bytes, want, e->len);
    dc_sse_event_release(e);
}

/* Every body line becomes a data line, whatever its line ends (LF, CR, CRLF), and a body split
 * across chunks is formatted as if it were one piece (a CRLF split between chunks too). */
static void test_format(void **state)
{
    const char *p1[] = {"{\"a\":1}"};
    size_t l1[] = {7};
    expect(dc_sse_event_format(7, "update", p1, l1, 1), "id: 7\nevent: update\ndata: {\"a\":1}\n\n");
    const char *p2[] = {"x\r", "\ny\rz\n"};
    size_t l2[] = {2, 5};
    expect(dc_sse_event_format(0, "error", p2, l2, 2), "event: error\ndata: x\ndata: y\ndata: z\ndata: \n\n");
    expect(dc_sse_event_format(1, "update", NULL, NULL, 0), "id: 1\nevent: update\ndata: \n\n");
    expect(dc_sse_event_comment("heartbeat"), ": heartbeat\n\n");
    expect(dc_sse_event_retry(2000), "retry: 2000\n\n");
}

static void test_last_event_id(void **state)
{
    uint64_t id = 0;
    assert_true(dc_sse_parse_last_id(" 42 ", 4, &id));
    assert_int_equal(id, 42);
    assert_false(dc_sse_parse_last_id("0", 1, &id));
    assert_false(dc_sse_parse_last_id("", 0, &id));
    assert_false(dc_sse_parse_last_id("4x", 2, &id));
    assert_false(dc_sse_parse_last_id("99999999999999999999", 20, &id));
    assert_true(dc_sse_parse_last_id("1234567890123456789", 19, &id));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_last_event_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
