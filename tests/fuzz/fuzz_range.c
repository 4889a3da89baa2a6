/* libFuzzer target for http/range.h: dc_range_eval and dc_range_if_range_ok must never read out of
 * bounds, and keep these invariants:
 *  - a single range lies inside the representation: first <= last < size;
 *  - results other than SINGLE leave the positions untouched;
 *  - the range unit is case-insensitive (upper-casing the input changes nothing);
 *  - Content-Range values fit DC_RANGE_CONTENT_RANGE_MAX. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/range.h"

static void check(bool ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t rep = 0;
    memcpy(&rep, data, size < 8 ? size : 8);
    static const uint64_t sizes[] = {0, 1, 2, 100, 1000, UINT64_MAX};
    char *buf = malloc(size ? size : 1); /* exact size: ASan sees any overread */
    if (size)
        memcpy(buf, data, size);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]) + 1; k++) {
        uint64_t len = k < sizeof(sizes) / sizeof(sizes[0]) ? sizes[k] : rep;
        uint64_t f = 7, l = 7;
        dc_range_result_t res = dc_range_eval(buf, size, len, &f, &l);
        if (res == DC_RANGE_SINGLE)
            check(f <= l && l < len);
        else
            check(f == 7 && l == 7);
        char *up = malloc(size ? size : 1);
        for (size_t i = 0; i < size; i++)
            up[i] = buf[i] >= 'a' && buf[i] <= 'z' ? (char)(buf[i] - 'a' + 'A') : buf[i];
        uint64_t f2 = 7, l2 = 7;
        check(dc_range_eval(up, size, len, &f2, &l2) == res && f2 == f && l2 == l);
        free(up);
        char cr[DC_RANGE_CONTENT_RANGE_MAX];
        check(dc_range_content_range(cr, res == DC_RANGE_SINGLE ? f : UINT64_MAX, l, len) < sizeof(cr));
    }
    free(buf);
    return 0;
}
