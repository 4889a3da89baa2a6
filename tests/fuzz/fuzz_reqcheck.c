/* libFuzzer target for the raw HTTP/1 head checker: it must never read out of bounds or crash,
 * answer only 0/400/431, and give the same verdict whatever bytes follow the head's blank line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/reqcheck.h"

/* Independent definition of the head's end: after the request line, the first line that is empty
 * or a lone "\r". Returns the length up to and including its '\n', or 0 when there is none. */
static size_t head_end(const char *p, size_t n)
{
    const char *nl = memchr(p, '\n', n);
    if (nl == NULL)
        return 0;
    size_t i = (size_t)(nl - p) + 1;
    while (i < n) {
        nl = memchr(p + i, '\n', n - i);
        if (nl == NULL)
            return 0;
        size_t len = (size_t)(nl - (p + i));
        if (len == 0 || (len == 1 && p[i] == '\r'))
            return (size_t)(nl - p) + 1;
        i = (size_t)(nl - p) + 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const dc_reqcheck_limits_t limits = {8192, 16384, 64};
    const char *why = NULL;
    char *buf = malloc(size ? size : 1); /* exact size: ASan sees any overread */
    memcpy(buf, data, size);
    int full = dc_reqcheck_h1_head(buf, size, &limits, &why);
    if (full != 0 && full != 400 && full != 431)
        abort();
    size_t end = head_end(buf, size);
    if (end > 0 && dc_reqcheck_h1_head(buf, end, &limits, &why) != full)
        abort();
    if (end == 0 && full != 400)
        abort(); /* no complete head must be refused */
    free(buf);
    return 0;
}
