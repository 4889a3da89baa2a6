/* libFuzzer target for upstream/cause.h: dc_upstream_cause_scrub must never read or write out of
 * bounds, and keep these invariants whatever the text and the secrets:
 *  - the result is NUL-terminated, its length is what it returns, below the capacity;
 *  - no control character, '?' or '#' is left (a query or fragment never shows);
 *  - no secret (4+ bytes, without '*' or control characters) shows;
 *  - it does not end with a space.
 * Input: NUL-separated pieces; the first is the text, the others secrets; the first byte also picks
 * the capacity. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/cause.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

static int secret_counts(const char *s)
{
    if (strlen(s) < 4 || strchr(s, '*') != NULL)
        return 0;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (size)
        memcpy(buf, data, size);
    buf[size] = '\0';
    const char *pieces[16];
    size_t n = 0;
    for (size_t i = 0; i <= size && n < 16;) {
        pieces[n++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    size_t caps[] = {1, 2, 16, DC_CAUSE_TEXT_MAX, (size ? data[0] : 0) + 1u};
    for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
        char *out = malloc(caps[c]); /* exact size: ASan sees any overrun */
        size_t len = dc_upstream_cause_scrub(out, caps[c], pieces[0], pieces + 1, n - 1);
        check(len < caps[c] && strlen(out) == len);
        for (size_t i = 0; i < len; i++)
            check((unsigned char)out[i] >= 0x20 && out[i] != 0x7f && out[i] != '?' && out[i] != '#');
        check(len == 0 || out[len - 1] != ' ');
        for (size_t k = 1; k < n; k++)
            check(!secret_counts(pieces[k]) || strstr(out, pieces[k]) == NULL);
        free(out);
    }
    free(buf);
    return 0;
}
