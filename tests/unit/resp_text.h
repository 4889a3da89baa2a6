/* For unit tests of code that reads Redis replies: one reply tree from RESP text, parsed by
 * hiredis' own reader (as the daemon parses Redis's bytes). Freed with freeReplyObject. */
#ifndef DC_TEST_RESP_TEXT_H
#define DC_TEST_RESP_TEXT_H

#include <hiredis/hiredis.h>

static inline redisReply *resp_n(const char *text, size_t len)
{
    redisReader *rd = redisReaderCreate();
    void *reply = NULL;
    assert_int_equal(redisReaderFeed(rd, text, len), REDIS_OK);
    assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(rd);
    return reply;
}

#endif
