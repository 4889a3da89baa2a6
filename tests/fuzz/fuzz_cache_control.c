/* libFuzzer target for the caching policy's header-value parsers (cache/policy.h): dc_cc_parse and
 * dc_http_date_parse must never read out of bounds or crash, and must keep these invariants:
 *  - merging a Cache-Control value twice gives the same result as once (first-wins is idempotent);
 *  - without quotes, parsing the comma-separated pieces as separate lines equals the whole line;
 *  - directive names and dates are case-insensitive: upper- or lower-casing the input changes
 *    nothing;
 *  - durations are -1 or within 0..2^31; dates are -1 or within 1970..9999;
 *  - dc_http_date_parse(dc_http_date_format(t)) == t for a t taken from the input, and a parsed
 *    date formats to something that parses back to it;
 *  - dc_policy_decide on the parsed value gives ordered windows (fresh <= swr, sie <= keep). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/policy.h"

#define DELTA_MAX INT64_C(2147483648)
#define DATE_MAX INT64_C(253402300799)

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool cc_equal(const dc_cc_t *a, const dc_cc_t *b)
{
    return a->no_store == b->no_store && a->no_cache == b->no_cache && a->private_ == b->private_ &&
           a->public_ == b->public_ && a->must_revalidate == b->must_revalidate &&
           a->proxy_revalidate == b->proxy_revalidate && a->immutable == b->immutable &&
           a->only_if_cached == b->only_if_cached && a->max_age == b->max_age && a->s_maxage == b->s_maxage &&
           a->stale_while_revalidate == b->stale_while_revalidate && a->stale_if_error == b->stale_if_error &&
           a->max_stale == b->max_stale && a->min_fresh == b->min_fresh;
}

static bool delta_ok(int64_t v)
{
    return v == -1 || (v >= 0 && v <= DELTA_MAX);
}

/* max-age / s-maxage may also be invalid (stale on arrival) */
static bool fresh_ok(int64_t v)
{
    return v == DC_CC_INVALID || delta_ok(v);
}

/* The targeted-field (sf-dictionary) parser, Age and the field-name lookup on the same bytes:
 * durations stay in range, a refused line leaves the result untouched, Age is -1 or 0..2^31. */
static void fuzz_more(const char *buf, size_t size)
{
    dc_cc_t t, before;
    dc_cc_init(&t);
    before = t;
    if (dc_cc_parse_targeted(buf, size, &t))
        check(delta_ok(t.max_age) && delta_ok(t.s_maxage) && delta_ok(t.stale_while_revalidate) &&
              delta_ok(t.stale_if_error));
    else
        check(cc_equal(&t, &before));
    check(delta_ok(dc_age_parse(buf, size)));
    (void)dc_cc_names_field(buf, size, "set-cookie", 10);
}

static char *exact_copy(const uint8_t *data, size_t size)
{
    char *p = malloc(size ? size : 1); /* exact size: ASan sees any overread */
    if (size)
        memcpy(p, data, size);
    return p;
}

static void recase(char *p, size_t n, bool upper)
{
    for (size_t i = 0; i < n; i++) {
        if (upper && p[i] >= 'a' && p[i] <= 'z')
            p[i] = (char)(p[i] - 'a' + 'A');
        else if (!upper && p[i] >= 'A' && p[i] <= 'Z')
            p[i] = (char)(p[i] - 'A' + 'a');
    }
}

static void fuzz_cc(const char *buf, size_t size, dc_cc_t *once)
{
    dc_cc_init(once);
    dc_cc_parse(buf, size, once);
    check(fresh_ok(once->max_age) && fresh_ok(once->s_maxage) && delta_ok(once->stale_while_revalidate) &&
          delta_ok(once->stale_if_error) && delta_ok(once->max_stale) && delta_ok(once->min_fresh));

    dc_cc_t twice = *once;
    dc_cc_parse(buf, size, &twice);
    check(cc_equal(once, &twice));

    for (int upper = 0; upper <= 1; upper++) {
        char *c = exact_copy((const uint8_t *)buf, size);
        recase(c, size, upper);
        dc_cc_t cased;
        dc_cc_init(&cased);
        dc_cc_parse(c, size, &cased);
        check(cc_equal(once, &cased));
        free(c);
    }

    if (memchr(buf, '"', size) == NULL) {
        dc_cc_t pieces;
        dc_cc_init(&pieces);
        size_t start = 0;
        for (size_t i = 0; i <= size; i++) {
            if (i == size || buf[i] == ',') {
                char *piece = exact_copy((const uint8_t *)buf + start, i - start);
                dc_cc_parse(piece, i - start, &pieces);
                free(piece);
                start = i + 1;
            }
        }
        check(cc_equal(once, &pieces));
    }
}

static void fuzz_date(const uint8_t *data, const char *buf, size_t size)
{
    char out[30];
    int64_t t = dc_http_date_parse(buf, size);
    check(t == -1 || (t >= 0 && t <= DATE_MAX));
    if (t >= 0) {
        check(dc_http_date_format(t, out) == 29 && out[29] == '\0');
        check(dc_http_date_parse(out, 29) == t);
    }
    for (int upper = 0; upper <= 1; upper++) {
        char *c = exact_copy(data, size);
        recase(c, size, upper);
        check(dc_http_date_parse(c, size) == t);
        free(c);
    }

    /* a timestamp derived from the input: the first 8 bytes, any int64 (clamped by the formatter) */
    uint64_t x = 0;
    memcpy(&x, data, size < 8 ? size : 8);
    int64_t raw = (int64_t)x, in_range = (int64_t)(x % (uint64_t)(DATE_MAX + 1));
    check(dc_http_date_format(in_range, out) == 29);
    check(dc_http_date_parse(out, 29) == in_range);
    check(dc_http_date_format(raw, out) == 29);
    check(dc_http_date_parse(out, 29) == (raw < 0 ? 0 : raw > DATE_MAX ? DATE_MAX : raw));
}

static void fuzz_decide(const uint8_t *data, size_t size, const dc_cc_t *cc, int64_t date)
{
    uint8_t b[8] = {0};
    memcpy(b, data, size < 8 ? size : 8);
    dc_config_cache_rule_t rule;
    memset(&rule, 0, sizeof(rule));
    rule.ttl_ms = (uint64_t)b[0] * 1000u;
    rule.stale_while_revalidate_ms = (uint64_t)b[1] * 1000u;
    rule.stale_if_error_ms = (uint64_t)b[2] * 1000u;
    rule.negative_ttl_ms = (uint64_t)(b[3] & 7) * 1000u;
    rule.respect_origin = b[4] & 1;
    rule.is_public = b[4] & 2;
    rule.heuristic = b[4] & 16 ? 0.1 : 0;
    rule.heuristic_max_ms = 3600000;
    dc_policy_request_t req = {.method_cacheable = true, .has_authorization = b[4] & 4};
    static const int statuses[8] = {200, 404, 501, 206, 500, 301, 410, 204};
    dc_policy_response_t res = {.status = statuses[b[5] & 7],
                                .has_cc = b[5] & 8,
                                .cc = *cc,
                                .pragma_no_cache = b[5] & 16,
                                .expires_s = b[5] & 32 ? date : -1,
                                .date_s = b[5] & 64 ? date - b[6] : -1,
                                .age_s = b[5] & 128 ? b[7] : -1,
                                .last_modified_s = b[4] & 32 ? date - b[6] * 10 : -1,
                                .has_validator = b[4] & 8,
                                .complete = true};
    dc_cc_init(&res.dcc);
    dc_cc_init(&res.cdncc);
    const uint64_t now = UINT64_C(1700000000000);
    dc_policy_decision_t d;
    dc_policy_decide(&rule, &req, &res, now, &d);
    check(d.fresh_until_ms >= now && d.swr_until_ms >= d.fresh_until_ms && d.sie_until_ms >= d.fresh_until_ms);
    check(d.keep_until_ms == (d.swr_until_ms > d.sie_until_ms ? d.swr_until_ms : d.sie_until_ms));
    check(d.verdict != DC_POLICY_ZERO_TTL || d.keep_until_ms == now);
    check(d.verdict != DC_POLICY_STORE || d.keep_until_ms > now || res.has_validator); /* kept to revalidate */
    check(!d.no_stale || (d.swr_until_ms == d.fresh_until_ms && d.sie_until_ms == d.fresh_until_ms));
    if (d.verdict == DC_POLICY_STORE) {
        check(dc_policy_freshness(d.fresh_until_ms, d.swr_until_ms, d.sie_until_ms, d.no_stale, false,
                                  d.keep_until_ms) == DC_EXPIRED);
        check(d.fresh_until_ms == now || dc_policy_freshness(d.fresh_until_ms, d.swr_until_ms, d.sie_until_ms,
                                                             d.no_stale, false, now) == DC_FRESH);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = exact_copy(data, size);
    dc_cc_t cc;
    fuzz_cc(buf, size, &cc);
    fuzz_more(buf, size);
    fuzz_date(data, buf, size);
    fuzz_decide(data, size, &cc, dc_http_date_parse(buf, size));
    free(buf);
    return 0;
}
