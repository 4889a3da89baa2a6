/* libFuzzer target for the conditional-request parsers (http/conditional.h): entity-tag lists,
 * If-Range and the evaluation must never read out of bounds or crash, and must keep these invariants:
 *  - the input, split at its first NUL into a request field and a stored ETag, evaluates the same
 *    whether the field comes as one line or split at a comma outside quotes into two lines;
 *  - a strong match implies a weak match; `*` always matches a current representation;
 *  - If-Match with a list that contains the stored strong tag never fails; If-None-Match on
 *    GET never gives 412 and on other methods never 304;
 *  - dc_cond_if_range_ok is true only if the stored tag is strong or a Last-Modified exists. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/conditional.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t flen = nul ? (size_t)(nul - data) : size;
    size_t tlen = nul ? size - flen - 1 : 0;
    char *field = exact_copy(data, flen);
    char *etag = exact_copy(nul ? nul + 1 : data, tlen);

    dc_etag_t tag;
    bool has_tag = dc_etag_parse(etag, tlen, &tag);
    bool strong = dc_cond_list_match(field, flen, has_tag ? &tag : NULL, true, true);
    bool weak = dc_cond_list_match(field, flen, has_tag ? &tag : NULL, true, false);
    check(!strong || weak);

    dc_cond_validators_t v = {
        .etag = etag, .etag_len = tlen, .last_modified_s = flen ? (int64_t)data[0] * 86400 : -1, .ims_fallback_s = -1};
    dc_cond_request_t r;
    memset(&r, 0, sizeof(r));
    r.get_or_head = true;
    r.if_none_match.v[0] = field;
    r.if_none_match.len[0] = flen;
    r.if_none_match.n = 1;
    dc_cond_result_t one = dc_cond_evaluate(&r, &v, 2000000000);
    check(one != DC_COND_PRECONDITION_FAIL);
    check((one == DC_COND_NOT_MODIFIED) == weak);
    r.get_or_head = false;
    check(dc_cond_evaluate(&r, &v, 2000000000) != DC_COND_NOT_MODIFIED);
    r.get_or_head = true;

    /* split at the first comma outside quotes: same answer */
    bool inq = false;
    for (size_t i = 0; i < flen; i++) {
        if (field[i] == '"')
            inq = !inq;
        else if (field[i] == ',' && !inq) {
            char *a = exact_copy((const uint8_t *)field, i),
                 *b = exact_copy((const uint8_t *)field + i + 1, flen - i - 1);
            r.if_none_match.v[0] = a;
            r.if_none_match.len[0] = i;
            r.if_none_match.v[1] = b;
            r.if_none_match.len[1] = flen - i - 1;
            r.if_none_match.n = 2;
            check(dc_cond_evaluate(&r, &v, 2000000000) == one);
            free(a);
            free(b);
            break;
        }
    }

    /* If-Match, dates and If-Range on the same bytes */
    memset(&r, 0, sizeof(r));
    r.get_or_head = true;
    r.if_match.v[0] = field;
    r.if_match.len[0] = flen;
    r.if_match.n = 1;
    check((dc_cond_evaluate(&r, &v, 2000000000) == DC_COND_PROCEED) == strong);
    memset(&r, 0, sizeof(r));
    r.get_or_head = true;
    r.if_modified_since.v[0] = field;
    r.if_modified_since.len[0] = flen;
    r.if_modified_since.n = 1;
    r.if_unmodified_since = r.if_modified_since;
    (void)dc_cond_evaluate(&r, &v, 2000000000);
    if (dc_cond_if_range_ok(field, flen, &v))
        check((has_tag && !tag.weak) || v.last_modified_s >= 0);
    (void)dc_cond_result_name(one);

    free(field);
    free(etag);
    return 0;
}
