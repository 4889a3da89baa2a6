/* libFuzzer target for what the fleet bus reads from Redis: a wire message as such (dc_bus_parse),
 * and the same bytes as Redis replies (hiredis' reader) seen by the subscriber connection
 * (dc_redis_push_parse, then dc_bus_parse of a message's payload) and by the catch-up LRANGE
 * (dc_bus_log_each). Never crash, overread or leak; parsed parts must lie inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redis/bus.h"
#include "redis/redis.h"
#include "resp_feed.h"

static void check_wire(void *data, const char *raw, size_t len)
{
    dc_bus_msg_t m;
    const char *sender;
    size_t slen;
    if (!dc_bus_parse(raw, len, &m, &sender, &slen))
        return;
    /* type, '|', at_ms, '|', sender (non-empty, no '|'), '|', body to the end */
    if (len < 2 || m.type != raw[0] || slen == 0 || sender < raw + 3 || sender + slen >= raw + len)
        abort();
    if (memchr(sender, '|', slen) != NULL || sender[slen] != '|')
        abort();
    if (m.body != sender + slen + 1 || m.body + m.len != raw + len || m.replay)
        abort();
}

static void check_reply(const redisReply *reply)
{
    const char *msg;
    size_t len;
    dc_redis_push_t kind = dc_redis_push_parse(reply, &msg, &len);
    if (kind == DC_REDIS_PUSH_MESSAGE) {
        if (msg != reply->element[2]->str || len != reply->element[2]->len)
            abort();
        check_wire(NULL, msg, len);
    } else if (msg != NULL || len != 0) {
        abort();
    }
    bool array = dc_bus_log_each(reply, check_wire, NULL);
    if (array != (reply->type == REDIS_REPLY_ARRAY))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so a read past the end is caught */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    check_wire(NULL, buf, size);
    free(buf);
    dc_fuzz_resp_each(data, size, check_reply);
    return 0;
}
