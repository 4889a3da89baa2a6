/* libFuzzer target for the L2 entry decoder: arbitrary bytes from Redis must decode to NULL or to
 * an entry that re-encodes to exactly the same bytes, never crash, leak or overread. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/l2codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    int err;
    dc_cache_entry_t *e = dc_l2_decode("GET /k", 6, buf, size, &err);
    if (e != NULL) {
        size_t len;
        char *again = dc_l2_encode(e, &len);
        if (len != size || memcmp(again, buf, size) != 0)
            abort();
        free(again);
        dc_cache_entry_release(e);
    }
    free(buf);
    return 0;
}
