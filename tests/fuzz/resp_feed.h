/* For the fuzz targets that take what Redis sends: turn the fuzz bytes into reply trees with
 * hiredis' own reader (the code that parses Redis's bytes in the daemon), then hand each tree to
 * the target's check. Not a target itself (no fuzz_ prefix). */
#ifndef DC_FUZZ_RESP_FEED_H
#define DC_FUZZ_RESP_FEED_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

/* hiredis allocates an array's element table as soon as it reads "*<count>": a huge count would be
 * an allocation failure inside hiredis (libFuzzer's malloc limit), not a finding in our code, and
 * Redis never sends one. Skip inputs that contain one anywhere. */
static inline int dc_fuzz_resp_counts_ok(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (d[i] != '*')
            continue;
        size_t j = i + 1;
        if (j < n && d[j] == '-')
            j++;
        uint64_t v = 0;
        while (j < n && d[j] >= '0' && d[j] <= '9' && v <= 4096)
            v = v * 10 + (uint64_t)(d[j++] - '0');
        if (v > 4096)
            return 0;
    }
    return 1;
}

/* Feed all bytes, then call check on every complete reply (at most 64), freeing each after. */
static inline void dc_fuzz_resp_each(const uint8_t *data, size_t size, void (*check)(const redisReply *reply))
{
    if (!dc_fuzz_resp_counts_ok(data, size))
        return;
    redisReader *rd = redisReaderCreate();
    if (rd == NULL)
        return;
    if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK) {
        for (int i = 0; i < 64; i++) {
            void *reply = NULL;
            if (redisReaderGetReply(rd, &reply) != REDIS_OK || reply == NULL)
                break;
            check(reply);
            freeReplyObject(reply);
        }
    }
    redisReaderFree(rd);
}

#endif
