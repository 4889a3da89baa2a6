/* Tests for the pure parts of the fleet bus (redis/bus.h) and of pub/sub replies (redis/redis.h):
 * the wire message, the catch-up log reply, and what a subscriber connection receives. Reply trees
 * are built from RESP bytes by hiredis' own reader. */
#include "cmocka_prelude.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis/bus.h"
#include "redis/redis.h"

#include "resp_text.h"
#define RESP(lit) resp_n(lit, sizeof(lit) - 1)

static bool parse(const char *raw, dc_bus_msg_t *m, char *sender)
{
    const char *s;
    size_t sl;
    if (!dc_bus_parse(raw, strlen(raw), m, &s, &sl))
        return false;
    memcpy(sender, s, sl);
    sender[sl] = '\0';
    return true;
}

static void test_parse(void **state)
{
    dc_bus_msg_t m;
    char sender[64];
    assert_true(parse("P|1796305165330|host:12:0a1b|kGET /jup/price/v3?ids=A", &m, sender));
    assert_int_equal(m.type, 'P');
    assert_int_equal(m.at_ms, 1796305165330ULL);
    assert_string_equal(sender, "host:12:0a1b");
    assert_int_equal(m.len, strlen("kGET /jup/price/v3?ids=A"));
    assert_memory_equal(m.body, "kGET /jup/price/v3?ids=A", m.len);
    assert_false(m.replay);

    /* the body may hold '|' and be empty */
    assert_true(parse("Q|5|s|a|b|c", &m, sender));
    assert_int_equal(m.len, 5);
    assert_memory_equal(m.body, "a|b|c", 5);
    assert_true(parse("Q|5|s|", &m, sender));
    assert_int_equal(m.len, 0);

    static const char *bad[] = {
        "",     "P",     "P|",     "PP|1|s|b", "||1|s|b",  " |1|s|b", "P|1",
        "P|1|", "P|1|s", "P||s|b", "P|x|s|b",  "P|-1|s|b", "P|1||b",  "P|18446744073709551616|s|b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse(bad[i], &m, sender))
            fail_msg("accepted \"%s\"", bad[i]);
}

typedef struct seen {
    int n;
    char got[8][32];
} seen_t;

static void collect(void *data, const char *raw, size_t len)
{
    seen_t *s = data;
    assert_true(s->n < 8);
    snprintf(s->got[s->n++], sizeof(s->got[0]), "%.*s", (int)len, raw);
}

static void test_log_each(void **state)
{
    /* LRANGE: newest first; delivered oldest first, non-strings skipped */
    redisReply *r = RESP("*4\r\n$7\r\nP|3|s|c\r\n:5\r\n$7\r\nP|2|s|b\r\n$7\r\nP|1|s|a\r\n");
    seen_t s = {0};
    assert_true(dc_bus_log_each(r, collect, &s));
    assert_int_equal(s.n, 3);
    assert_string_equal(s.got[0], "P|1|s|a");
    assert_string_equal(s.got[1], "P|2|s|b");
    assert_string_equal(s.got[2], "P|3|s|c");
    freeReplyObject(r);

    r = RESP("*0\r\n");
    memset(&s, 0, sizeof(s));
    assert_true(dc_bus_log_each(r, collect, &s));
    assert_int_equal(s.n, 0);
    freeReplyObject(r);

    r = RESP("-WRONGTYPE x\r\n");
    assert_false(dc_bus_log_each(r, collect, &s));
    freeReplyObject(r);
    r = RESP("$-1\r\n");
    assert_false(dc_bus_log_each(r, collect, &s));
    freeReplyObject(r);
    assert_false(dc_bus_log_each(NULL, collect, &s));
    assert_int_equal(s.n, 0);
}

static void test_push_parse(void **state)
{
    const char *msg;
    size_t len;
    redisReply *r = RESP("*3\r\n$7\r\nmessage\r\n$5\r\nd:bus\r\n$9\r\nP|1|s|a\0b\r\n");
    assert_int_equal(dc_redis_push_parse(r, &msg, &len), DC_REDIS_PUSH_MESSAGE);
    assert_int_equal(len, 9);
    assert_memory_equal(msg, "P|1|s|a\0b", 9);
    freeReplyObject(r);

    r = RESP("*3\r\n$9\r\nsubscribe\r\n$5\r\nd:bus\r\n:1\r\n");
    assert_int_equal(dc_redis_push_parse(r, &msg, &len), DC_REDIS_PUSH_SUBSCRIBE);
    assert_null(msg);
    freeReplyObject(r);
    r = RESP("*3\r\n$11\r\nunsubscribe\r\n$5\r\nd:bus\r\n:0\r\n");
    assert_int_equal(dc_redis_push_parse(r, &msg, &len), DC_REDIS_PUSH_UNSUBSCRIBE);
    freeReplyObject(r);

    static const struct {
        const char *text;
        size_t len;
    } other[] = {
#define O(lit) {lit, sizeof(lit) - 1}
        O("*3\r\n$7\r\nmessage\r\n$5\r\nd:bus\r\n:1\r\n"),              /* payload not a string */
        O("*3\r\n$7\r\nmessage\r\n$5\r\nd:bus\r\n$-1\r\n"),             /* nil payload */
        O("*2\r\n$7\r\nmessage\r\n$5\r\nd:bus\r\n"),                    /* too short */
        O("*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$1\r\nc\r\n$1\r\nm\r\n"), /* pattern: not used */
        O("*3\r\n$9\r\nmessage\0x\r\n$1\r\nc\r\n$1\r\nm\r\n"),          /* NUL inside the kind */
        O("*3\r\n$7\r\nMESSAGE\r\n$1\r\nc\r\n$1\r\nm\r\n"),
        O("*3\r\n:1\r\n$1\r\nc\r\n$1\r\nm\r\n"),
        O("+PONG\r\n"),
        O("-ERR x\r\n"),
#undef O
    };
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        r = resp_n(other[i].text, other[i].len);
        if (dc_redis_push_parse(r, &msg, &len) != DC_REDIS_PUSH_OTHER)
            fail_msg("case %zu not OTHER", i);
        assert_null(msg);
        assert_int_equal(len, 0);
        freeReplyObject(r);
    }
    assert_int_equal(dc_redis_push_parse(NULL, &msg, &len), DC_REDIS_PUSH_OTHER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_log_each),
        cmocka_unit_test(test_push_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
