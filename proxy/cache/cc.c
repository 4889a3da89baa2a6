/*
 * Header-value parsers for the caching policy: Cache-Control (RFC 9111 5.2, list syntax of
 * RFC 9110 5.6.1) and HTTP-date (RFC 9110 5.6.7). Declared in cache/policy.h.
 *
 * Both are pure, bounded by the given length (never read v[len], never need a NUL), locale-free
 * and allocation-free; both are fuzzed (tests/fuzz/fuzz_cache_control.c).
 */
#include "core/httptok.h"
#include "cache/policy.h"

#include <string.h>

/* RFC 9111 1.2.2: a delta-seconds too large to represent is taken as 2^31. */
#define DELTA_MAX INT64_C(2147483648)

/* Range of dates both functions handle: 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59Z. */
#define DATE_MAX INT64_C(253402300799)

/* ---- Cache-Control ---------------------------------------------------------------------------- */

/* ASCII case-insensitive compare of n bytes; strncasecmp would follow the locale. */
static bool ascii_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (char)(y - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

static bool name_is(const char *name, size_t len, const char *lit)
{
    return strlen(lit) == len && ascii_ieq(name, lit, len);
}

/* Position of the ',' ending the list element that contains p (or end), skipping over quoted
 * strings so that a comma inside quotes does not split the element. */
static const char *element_end(const char *p, const char *end)
{
    bool quoted = false;
    for (; p < end; p++) {
        if (quoted) {
            if (*p == '\\' && p + 1 < end)
                p++;
            else if (*p == '"')
                quoted = false;
        } else if (*p == '"') {
            quoted = true;
        } else if (*p == ',') {
            break;
        }
    }
    return p;
}

/* delta-seconds = 1*DIGIT; anything else (empty, sign, fraction, escapes) is -1. Values above
 * 2^31 are clamped to 2^31 (RFC 9111 1.2.2). */
static int64_t parse_delta(const char *v, size_t len)
{
    if (len == 0)
        return -1;
    int64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        n = n * 10 + (v[i] - '0');
        if (n > DELTA_MAX)
            n = DELTA_MAX; /* keeps n * 10 far from overflow while the remaining digits are checked */
    }
    return n;
}

/* One directive. `val` is NULL when there was no "=value"; `bad` when the element did not end
 * right after the name or value (junk, unterminated quote, empty token). */
static void apply(dc_cc_t *cc, const char *name, size_t nlen, const char *val, size_t vlen, bool bad)
{
    static const struct {
        const char *name;
        size_t off;
    } flags[] = {
        {"no-store", offsetof(dc_cc_t, no_store)},
        {"no-cache", offsetof(dc_cc_t, no_cache)},
        {"private", offsetof(dc_cc_t, private_)},
        {"public", offsetof(dc_cc_t, public_)},
        {"must-revalidate", offsetof(dc_cc_t, must_revalidate)},
        {"proxy-revalidate", offsetof(dc_cc_t, proxy_revalidate)},
        {"immutable", offsetof(dc_cc_t, immutable)},
        {"only-if-cached", offsetof(dc_cc_t, only_if_cached)},
    };
    static const struct {
        const char *name;
        size_t off;
    } deltas[] = {
        {"max-age", offsetof(dc_cc_t, max_age)},
        {"s-maxage", offsetof(dc_cc_t, s_maxage)},
        {"stale-while-revalidate", offsetof(dc_cc_t, stale_while_revalidate)},
        {"stale-if-error", offsetof(dc_cc_t, stale_if_error)},
        {"max-stale", offsetof(dc_cc_t, max_stale)},
        {"min-fresh", offsetof(dc_cc_t, min_fresh)},
    };

    /* A flag is present whatever follows its name: no-cache="x" and private="set-cookie" are
     * no-cache and private (the field-name forms are not implemented, so the whole response is
     * concerned), and "no-store junk" is still no-store. For the restrictive flags this errs toward
     * caching less; dc_policy_decide() does not act on the others. */
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        if (name_is(name, nlen, flags[i].name)) {
            *(bool *)((char *)cc + flags[i].off) = true;
            return;
        }
    }
    for (size_t i = 0; i < sizeof(deltas) / sizeof(deltas[0]); i++) {
        if (!name_is(name, nlen, deltas[i].name))
            continue;
        int64_t *field = (int64_t *)((char *)cc + deltas[i].off);
        int64_t n;
        if (bad)
            n = -1;
        else if (val == NULL)
            n = deltas[i].off == offsetof(dc_cc_t, max_stale) ? DELTA_MAX : -1; /* bare max-stale: any */
        else
            n = parse_delta(val, vlen);
        /* RFC 9111 4.2.1 allows "first occurrence" for duplicates: the first well-formed value
         * wins, in this line and across lines (merging is therefore idempotent). */
        if (n >= 0 && *field < 0)
            *field = n;
        return;
    }
}

void dc_cc_init(dc_cc_t *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age = cc->s_maxage = cc->stale_while_revalidate = cc->stale_if_error = -1;
    cc->max_stale = cc->min_fresh = -1;
}

/*
 * cache-directive = token [ "=" ( token / quoted-string ) ], comma-separated, OWS around elements.
 * Leniencies (RFC 9111 5.2 asks recipients to be lenient): names are case-insensitive; OWS is also
 * accepted around "="; empty elements are skipped; numeric values may be quoted ("60"); an element
 * that is not a directive (junk, stray quotes) is skipped up to the next comma outside quotes and
 * the following directives still count.
 */
void dc_cc_parse(const char *v, size_t len, dc_cc_t *cc)
{
    if (len == 0)
        return; /* v may be NULL then, and NULL + 0 is undefined */
    const char *p = v, *end = v + len;
    while (p < end) {
        while (p < end && (dc_http_is_ows(*p) || *p == ','))
            p++;
        if (p == end)
            break;
        const char *name = p;
        while (p < end && dc_http_is_tchar(*p))
            p++;
        size_t nlen = (size_t)(p - name);
        const char *val = NULL;
        size_t vlen = 0;
        bool bad = false;

        while (p < end && dc_http_is_ows(*p))
            p++;
        if (p < end && *p == '=') {
            p++;
            while (p < end && dc_http_is_ows(*p))
                p++;
            if (p < end && *p == '"') {
                val = ++p;
                while (p < end && *p != '"')
                    p += (*p == '\\' && p + 1 < end) ? 2 : 1;
                if (p == end) {
                    bad = true; /* unterminated: the rest of the line is this value */
                } else {
                    vlen = (size_t)(p - val);
                    p++;
                }
            } else {
                val = p;
                while (p < end && dc_http_is_tchar(*p))
                    p++;
                vlen = (size_t)(p - val);
                bad = vlen == 0;
            }
            while (p < end && dc_http_is_ows(*p))
                p++;
        }
        if (p < end && *p != ',') {
            bad = true;
            p = element_end(p, end);
        }
        if (nlen > 0)
            apply(cc, name, nlen, val, vlen, bad);
    }
}

/* ---- HTTP-date -------------------------------------------------------------------------------- */

static const char wday_names[7][10] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
static const char month_names[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

typedef struct cursor {
    const char *p, *end;
} cursor_t;

/* Case-insensitive literal (RFC 9111 4.2: caches SHOULD match dates case-insensitively). */
static bool lit(cursor_t *c, const char *s, size_t n)
{
    if ((size_t)(c->end - c->p) < n || !ascii_ieq(c->p, s, n))
        return false;
    c->p += n;
    return true;
}

/* Exactly n digits. */
static bool digits(cursor_t *c, int n, int *out)
{
    if (c->end - c->p < n)
        return false;
    int v = 0;
    for (int i = 0; i < n; i++) {
        char d = c->p[i];
        if (d < '0' || d > '9')
            return false;
        v = v * 10 + (d - '0');
    }
    c->p += n;
    *out = v;
    return true;
}

static bool short_wday(cursor_t *c)
{
    for (int i = 0; i < 7; i++)
        if (lit(c, wday_names[i], 3))
            return true;
    return false;
}

static bool long_wday(cursor_t *c)
{
    for (int i = 0; i < 7; i++)
        if (lit(c, wday_names[i], strlen(wday_names[i])))
            return true;
    return false;
}

static bool month(cursor_t *c, int *m)
{
    for (int i = 0; i < 12; i++) {
        if (lit(c, month_names[i], 3)) {
            *m = i + 1;
            return true;
        }
    }
    return false;
}

/* time-of-day = hour ":" minute ":" second */
static bool time_of_day(cursor_t *c, int *h, int *mi, int *s)
{
    return digits(c, 2, h) && lit(c, ":", 1) && digits(c, 2, mi) && lit(c, ":", 1) && digits(c, 2, s);
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil), so that no libc time function (timegm, TZ, locale) is involved. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* Checked fields -> epoch seconds, or -1. Second 60 (leap second) is accepted and rolls over into
 * the next minute. Years before 1970 are refused: -1 is the error value, and no cache decision
 * needs to tell such a date from garbage (an Expires in the past and an invalid one both mean
 * "already expired"). The weekday is checked for a valid name only, not against the date. */
static int64_t to_epoch(int y, int m, int d, int h, int mi, int s)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || d < 1 || d > mdays[m - 1] + (m == 2 && is_leap(y)) || h > 23 || mi > 59 || s > 60)
        return -1;
    int64_t t = days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60 + s;
    return t <= DATE_MAX ? t : -1; /* 9999-12-31 23:59:60 would leave the range the formatter covers */
}

/* IMF-fixdate = day-name "," SP 2DIGIT SP month SP 4DIGIT SP time-of-day SP "GMT" */
static int64_t parse_imf(cursor_t c)
{
    int d, m, y, h, mi, s;
    if (!short_wday(&c) || !lit(&c, ", ", 2) || !digits(&c, 2, &d) || !lit(&c, " ", 1) || !month(&c, &m) ||
        !lit(&c, " ", 1) || !digits(&c, 4, &y) || !lit(&c, " ", 1) || !time_of_day(&c, &h, &mi, &s) ||
        !lit(&c, " GMT", 4) || c.p != c.end)
        return -1;
    return to_epoch(y, m, d, h, mi, s);
}

/* rfc850-date = day-name-l "," SP 2DIGIT "-" month "-" 2DIGIT SP time-of-day SP "GMT".
 * RFC 9110 wants a two-digit year that looks more than 50 years in the future taken as in the
 * past, which depends on "now"; this parser has no clock, so it uses the fixed pivot that nginx
 * and curl use: 70..99 -> 19xx, 00..69 -> 20xx. The format has been obsolete since 1996. */
static int64_t parse_rfc850(cursor_t c)
{
    int d, m, y, h, mi, s;
    if (!long_wday(&c) || !lit(&c, ", ", 2) || !digits(&c, 2, &d) || !lit(&c, "-", 1) || !month(&c, &m) ||
        !lit(&c, "-", 1) || !digits(&c, 2, &y) || !lit(&c, " ", 1) || !time_of_day(&c, &h, &mi, &s) ||
        !lit(&c, " GMT", 4) || c.p != c.end)
        return -1;
    return to_epoch(y + (y < 70 ? 2000 : 1900), m, d, h, mi, s);
}

/* asctime-date = day-name SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP time-of-day SP 4DIGIT */
static int64_t parse_asctime(cursor_t c)
{
    int d, m, y, h, mi, s;
    if (!short_wday(&c) || !lit(&c, " ", 1) || !month(&c, &m) || !lit(&c, " ", 1))
        return -1;
    if (!(lit(&c, " ", 1) ? digits(&c, 1, &d) : digits(&c, 2, &d)))
        return -1;
    if (!lit(&c, " ", 1) || !time_of_day(&c, &h, &mi, &s) || !lit(&c, " ", 1) || !digits(&c, 4, &y) || c.p != c.end)
        return -1;
    return to_epoch(y, m, d, h, mi, s);
}

/* Exact grammar of the three forms (case-insensitive, OWS around the value trimmed); any other
 * zone than GMT, extra or missing characters, or an impossible date (31 Apr, 29 Feb 1995, 24:00)
 * is -1 (RFC 9111 4.2: other zones SHOULD be invalid for expiration). */
int64_t dc_http_date_parse(const char *v, size_t len)
{
    if (len == 0)
        return -1;
    cursor_t c = {v, v + len};
    while (c.p < c.end && dc_http_is_ows(*c.p))
        c.p++;
    while (c.end > c.p && dc_http_is_ows(c.end[-1]))
        c.end--;
    int64_t t = parse_imf(c);
    if (t < 0)
        t = parse_rfc850(c);
    if (t < 0)
        t = parse_asctime(c);
    return t;
}

static char *put2(char *b, int v)
{
    b[0] = (char)('0' + v / 10);
    b[1] = (char)('0' + v % 10);
    return b + 2;
}

/* `t` outside 1970..9999 is clamped to that range so the output always has the fixed length
 * (29) and always parses back. Writes a NUL after it. */
size_t dc_http_date_format(int64_t t, char *buf)
{
    if (t < 0)
        t = 0;
    if (t > DATE_MAX)
        t = DATE_MAX;
    int64_t days = t / 86400, secs = t % 86400;
    int y, m, d;
    civil_from_days(days, &y, &m, &d);
    char *b = buf;
    memcpy(b, wday_names[(days + 4) % 7], 3); /* 1970-01-01 was a Thursday */
    b += 3;
    *b++ = ',';
    *b++ = ' ';
    b = put2(b, d);
    *b++ = ' ';
    memcpy(b, month_names[m - 1], 3);
    b += 3;
    *b++ = ' ';
    b = put2(b, y / 100);
    b = put2(b, y % 100);
    *b++ = ' ';
    b = put2(b, (int)(secs / 3600));
    *b++ = ':';
    b = put2(b, (int)(secs / 60 % 60));
    *b++ = ':';
    b = put2(b, (int)(secs % 60));
    memcpy(b, " GMT", 5);
    return (size_t)(b + 4 - buf);
}
