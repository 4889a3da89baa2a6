/* libFuzzer target for the request checks: the raw HTTP/1 head checker must never read out of
 * bounds or crash, answer only 0/400/431, and give the same verdict whatever bytes follow the head's
 * blank line; the gate's prefix verdict is one of MORE/0/400/414/431; a normalised target is never longer than its
 * input, starts with '/', has no "//" or dot segment in its path, and normalises to itself. */
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

    static const dc_reqcheck_limits_t gate = {256, 1024, 64};
    int pv = dc_reqcheck_h1_prefix(buf, size, &gate, &why);
    if (pv != DC_REQCHECK_MORE && pv != 0 && pv != 400 && pv != 414 && pv != 431)
        abort();

    char *out = malloc(size ? size : 1), *again = malloc(size ? size : 1);
    size_t olen = 0, alen = 0;
    if (dc_reqcheck_path(buf, size, out, &olen, &why) == 0) {
        if (olen > size || olen == 0 || out[0] != '/')
            abort();
        const char *q = memchr(out, '?', olen);
        size_t plen = q ? (size_t)(q - out) : olen;
        for (size_t i = 0; i + 1 < plen; i++)
            if (out[i] == '/' && out[i + 1] == '/')
                abort();
        if (dc_reqcheck_path(out, olen, again, &alen, &why) != 0 || alen != olen || memcmp(out, again, olen) != 0)
            abort();
    }
    free(out);
    free(again);
    free(buf);
    return 0;
}
