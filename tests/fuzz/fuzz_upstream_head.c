/* libFuzzer target for reading an upstream response head (upstream/framing.h): the input is split
 * into lines at '\n' and fed as libcurl's header callback feeds the fetch. dc_hline_parse and the
 * framing verdict must never read out of bounds or crash, and must keep these invariants:
 *  - spans lie inside the line; a FIELD name is 1+ tchars, its value has no CR, LF or NUL and no
 *    surrounding whitespace; a STATUS code is 0 or 100..999;
 *  - a head accepted by dc_framing_finish never has both Content-Length and Transfer-Encoding, and
 *    a Transfer-Encoding it accepts is exactly chunked;
 *  - field names are case-insensitive: upper-casing the names changes no verdict;
 *  - dc_framing_body: with a Content-Length, exactly that many bytes are accepted when complete,
 *    one more is refused; without one, anything is accepted. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/httptok.h"
#include "upstream/framing.h"

static void check(bool ok)
{
    if (!ok)
        abort();
}

static char *exact_copy(const uint8_t *data, size_t size)
{
    char *p = malloc(size ? size : 1); /* exact size: ASan sees any overread */
    if (size)
        memcpy(p, data, size);
    return p;
}

/* Feed every line of buf; returns the verdict and fills fr. upper: field names upper-cased first. */
static int feed(const char *data, size_t size, bool upper, dc_framing_t *fr)
{
    dc_framing_init(fr);
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && data[i] != '\n')
            continue;
        size_t len = i - start + (i < size ? 1 : 0); /* with its '\n', as libcurl hands it */
        char *line = exact_copy((const uint8_t *)data + start, len);
        dc_hline_t hl;
        dc_hline_parse(line, len, &hl);
        switch (hl.kind) {
        case DC_HLINE_STATUS:
            check(hl.status == 0 || (hl.status >= 100 && hl.status <= 999));
            check(hl.value == NULL || (hl.value >= line && hl.value + hl.value_len <= line + len));
            dc_framing_init(fr); /* a new response starts */
            break;
        case DC_HLINE_FIELD:
            check(hl.name == line && hl.name_len > 0 && hl.name_len < len);
            check(hl.value >= line + hl.name_len + 1 && hl.value + hl.value_len <= line + len);
            for (size_t k = 0; k < hl.name_len; k++)
                check(dc_http_is_tchar(hl.name[k]));
            for (size_t k = 0; k < hl.value_len; k++)
                check(hl.value[k] != '\r' && hl.value[k] != '\n' && hl.value[k] != '\0');
            check(hl.value_len == 0 || (!dc_http_is_ows(hl.value[0]) && !dc_http_is_ows(hl.value[hl.value_len - 1])));
            if (upper) {
                char *name = exact_copy((const uint8_t *)hl.name, hl.name_len);
                for (size_t k = 0; k < hl.name_len; k++)
                    if (name[k] >= 'a' && name[k] <= 'z')
                        name[k] = (char)(name[k] - 'a' + 'A');
                dc_framing_field(fr, name, hl.name_len, hl.value, hl.value_len);
                free(name);
            } else {
                dc_framing_field(fr, hl.name, hl.name_len, hl.value, hl.value_len);
            }
            break;
        case DC_HLINE_INVALID:
            dc_framing_fail(fr, "malformed header line");
            break;
        case DC_HLINE_END:
            break;
        }
        free(line);
        start = i + 1;
    }
    return dc_framing_finish(fr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = exact_copy(data, size);
    dc_framing_t fr, fr_upper;
    int rc = feed(buf, size, false, &fr);
    int rc_upper = feed(buf, size, true, &fr_upper);
    check(rc == rc_upper && fr.content_length == fr_upper.content_length && fr.chunked == fr_upper.chunked);
    check((rc == 0) == (fr.error == NULL));
    if (rc == 0) {
        check(!(fr.has_te && fr.content_length >= 0));
        check(fr.has_te == fr.chunked);
        if (fr.content_length >= 0) {
            uint64_t cl = (uint64_t)fr.content_length;
            check(dc_framing_body(&fr, cl, true) == 0 && dc_framing_body(&fr, cl + 1, false) != 0);
            check(cl == 0 || dc_framing_body(&fr, cl - 1, true) != 0);
            check(cl == 0 || dc_framing_body(&fr, cl - 1, false) == 0);
        } else {
            check(dc_framing_body(&fr, size, true) == 0);
        }
    }
    check(!dc_framing_curl_text(buf, 0));
    (void)dc_framing_curl_text(buf, size);
    check(dc_framing_has_body(200, false) && !dc_framing_has_body(304, false) && !dc_framing_has_body(200, true));
    free(buf);
    return 0;
}
