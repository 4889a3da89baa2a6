/*
 * Header-value parsers for the caching policy: Cache-Control (RFC 9111 5.2, list syntax of
 * RFC 9110 5.6.1), targeted fields (RFC 9213, sf-dictionary of RFC 8941), Age (RFC 9111 5.1) and
 * HTTP-date (RFC 9110 5.6.7). Declared in cache/policy.h.
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

/* The directives dexcache knows, for the header parser (apply) and the targeted fields' Structured
 * Fields parser (sf_apply) alike: boolean flags, and delta-seconds (-1 when absent). Request-only
 * directives in a response's field, and response-only ones in a request's, are parsed and ignored. */
static const struct {
    const char *name;
    size_t off;
} cc_flags[] = {
    {"no-store", offsetof(dc_cc_t, no_store)},
    {"no-cache", offsetof(dc_cc_t, no_cache)},
    {"private", offsetof(dc_cc_t, private_)},
    {"public", offsetof(dc_cc_t, public_)},
    {"must-revalidate", offsetof(dc_cc_t, must_revalidate)},
    {"proxy-revalidate", offsetof(dc_cc_t, proxy_revalidate)},
    {"immutable", offsetof(dc_cc_t, immutable)},
    {"only-if-cached", offsetof(dc_cc_t, only_if_cached)},
    {"must-understand", offsetof(dc_cc_t, must_understand)},
};
static const struct {
    const char *name;
    size_t off;
} cc_deltas[] = {
    {"max-age", offsetof(dc_cc_t, max_age)},
    {"s-maxage", offsetof(dc_cc_t, s_maxage)},
    {"stale-while-revalidate", offsetof(dc_cc_t, stale_while_revalidate)},
    {"stale-if-error", offsetof(dc_cc_t, stale_if_error)},
    {"max-stale", offsetof(dc_cc_t, max_stale)},
    {"min-fresh", offsetof(dc_cc_t, min_fresh)},
};

/* One directive. `val` is NULL when there was no "=value"; `bad` when the element did not end
 * right after the name or value (junk, unterminated quote, empty token). */
static void apply(dc_cc_t *cc, const char *name, size_t nlen, const char *val, size_t vlen, bool bad)
{
    /* A flag is present whatever follows its name ("no-store junk" is still no-store). no-cache and
     * private with a well-formed, non-empty value are the qualified forms (field names, found later
     * by dc_cc_names_field); malformed or empty, they count as unqualified: that errs toward caching
     * less. must-understand lets a known status through no-store (dc_policy_decide). */
    bool qualified = val != NULL && !bad && vlen > 0;
    if (qualified && name_is(name, nlen, "no-cache")) {
        cc->no_cache_fields = true;
        return;
    }
    if (qualified && name_is(name, nlen, "private")) {
        cc->private_fields = true;
        return;
    }
    for (size_t i = 0; i < sizeof(cc_flags) / sizeof(cc_flags[0]); i++) {
        if (name_is(name, nlen, cc_flags[i].name)) {
            *(bool *)((char *)cc + cc_flags[i].off) = true;
            return;
        }
    }
    for (size_t i = 0; i < sizeof(cc_deltas) / sizeof(cc_deltas[0]); i++) {
        if (!name_is(name, nlen, cc_deltas[i].name))
            continue;
        int64_t *field = (int64_t *)((char *)cc + cc_deltas[i].off);
        int64_t n;
        if (bad)
            n = -1;
        else if (val == NULL)
            n = cc_deltas[i].off == offsetof(dc_cc_t, max_stale) ? DELTA_MAX : -1; /* bare max-stale: any */
        else
            n = parse_delta(val, vlen);
        bool freshness =
            cc_deltas[i].off == offsetof(dc_cc_t, max_age) || cc_deltas[i].off == offsetof(dc_cc_t, s_maxage);
        if (freshness) {
            /* RFC 9111 4.2.1: the first occurrence is used, valid or not; an invalid one (1.2.2:
             * "1a", "-1", empty) is invalid freshness information: stale (5.2) */
            if (*field == -1)
                *field = n >= 0 ? n : DC_CC_INVALID;
        } else if (n >= 0 && *field < 0) {
            *field = n; /* the extensions and request directives: the first well-formed value */
        }
        return;
    }
}

void dc_cc_init(dc_cc_t *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age = cc->s_maxage = cc->stale_while_revalidate = cc->stale_if_error = -1;
    cc->max_stale = cc->min_fresh = -1;
}

typedef void (*directive_cb)(void *ctx, const char *name, size_t nlen, const char *val, size_t vlen, bool bad);

/*
 * cache-directive = token [ "=" ( token / quoted-string ) ], comma-separated, OWS around elements.
 * Leniencies (RFC 9111 5.2 asks recipients to be lenient): names are case-insensitive; OWS is also
 * accepted around "="; empty elements are skipped; numeric values may be quoted ("60"); an element
 * that is not a directive (junk, stray quotes) is skipped up to the next comma outside quotes and
 * the following directives still count. Calls cb once per element with a name.
 */
static void walk(const char *v, size_t len, directive_cb cb, void *ctx)
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
            cb(ctx, name, nlen, val, vlen, bad);
    }
}

static void apply_cb(void *ctx, const char *name, size_t nlen, const char *val, size_t vlen, bool bad)
{
    apply(ctx, name, nlen, val, vlen, bad);
}

void dc_cc_parse(const char *v, size_t len, dc_cc_t *cc)
{
    walk(v, len, apply_cb, cc);
}

typedef struct names_ctx {
    const char *name;
    size_t len;
    bool found;
} names_ctx_t;

/* A qualified no-cache / private: is the wanted field in its comma-separated list? */
static void names_cb(void *ctx, const char *name, size_t nlen, const char *val, size_t vlen, bool bad)
{
    names_ctx_t *c = ctx;
    if (bad || val == NULL || !(name_is(name, nlen, "no-cache") || name_is(name, nlen, "private")))
        return;
    const char *p = val, *end = val + vlen;
    while (p < end && !c->found) {
        while (p < end && (dc_http_is_ows(*p) || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && dc_http_is_ows(e[-1]))
            e--;
        c->found = (size_t)(e - s) == c->len && ascii_ieq(s, c->name, c->len);
    }
}

bool dc_cc_names_field(const char *v, size_t len, const char *name, size_t name_len)
{
    names_ctx_t c = {name, name_len, false};
    if (name_len > 0)
        walk(v, len, names_cb, &c);
    return c.found;
}

/* ---- Age ------------------------------------------------------------------------------------ */

int64_t dc_age_parse(const char *v, size_t len)
{
    size_t i = 0;
    while (i < len && dc_http_is_ows(v[i]))
        i++;
    size_t e = i;
    while (e < len && v[e] != ',')
        e++;
    while (e > i && dc_http_is_ows(v[e - 1]))
        e--;
    return parse_delta(v + i, e - i); /* -1 for empty, a sign, a fraction or letters */
}

/* ---- targeted fields: sf-dictionary (RFC 8941 4.2.2) --------------------------------------- */

typedef enum { SF_INT = 1, SF_DEC, SF_STR, SF_TOKEN, SF_BIN, SF_BOOL, SF_INNER } sf_type_t;

typedef struct sf_cursor {
    const char *p, *end;
} sf_cursor_t;

static bool sf_lcalpha(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool sf_digit(char c)
{
    return c >= '0' && c <= '9';
}

static void sf_skip_sp(sf_cursor_t *c)
{
    while (c->p < c->end && *c->p == ' ')
        c->p++;
}

/* key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ) */
static bool sf_key(sf_cursor_t *c, const char **k, size_t *klen)
{
    if (c->p == c->end || !(sf_lcalpha(*c->p) || *c->p == '*'))
        return false;
    *k = c->p;
    while (c->p < c->end &&
           (sf_lcalpha(*c->p) || sf_digit(*c->p) || *c->p == '_' || *c->p == '-' || *c->p == '.' || *c->p == '*'))
        c->p++;
    *klen = (size_t)(c->p - *k);
    return true;
}

/* sf-integer (at most 15 digits) or sf-decimal (at most 12 integer and 3 fraction digits). */
static bool sf_number(sf_cursor_t *c, sf_type_t *type, int64_t *out)
{
    bool neg = false;
    if (c->p < c->end && *c->p == '-') {
        neg = true;
        c->p++;
    }
    int digits = 0, frac = -1;
    int64_t n = 0;
    while (c->p < c->end) {
        char ch = *c->p;
        if (sf_digit(ch)) {
            n = n * 10 + (ch - '0');
            if (frac >= 0)
                frac++;
            else
                digits++;
        } else if (ch == '.' && frac < 0 && digits > 0 && digits <= 12) {
            frac = 0;
        } else {
            break;
        }
        if (digits > 15 || frac > 3)
            return false;
        c->p++;
    }
    if (digits == 0 || frac == 0)
        return false;
    *type = frac > 0 ? SF_DEC : SF_INT;
    *out = neg ? -n : n;
    return true;
}

static bool sf_bare_item(sf_cursor_t *c, sf_type_t *type, int64_t *ival, const char **str, size_t *slen)
{
    if (c->p == c->end)
        return false;
    char ch = *c->p;
    if (ch == '-' || sf_digit(ch))
        return sf_number(c, type, ival);
    if (ch == '"') {
        *str = ++c->p;
        for (;;) {
            if (c->p == c->end)
                return false;
            char x = *c->p;
            if (x == '\\') {
                if (c->p + 1 == c->end || (c->p[1] != '"' && c->p[1] != '\\'))
                    return false;
                c->p += 2;
            } else if (x == '"') {
                *slen = (size_t)(c->p - *str);
                c->p++;
                *type = SF_STR;
                return true;
            } else if (x < 0x20 || x > 0x7e) {
                return false;
            } else {
                c->p++;
            }
        }
    }
    if (sf_lcalpha(ch) || (ch >= 'A' && ch <= 'Z') || ch == '*') {
        while (c->p < c->end && (dc_http_is_tchar(*c->p) || *c->p == ':' || *c->p == '/'))
            c->p++;
        *type = SF_TOKEN;
        return true;
    }
    if (ch == ':') {
        c->p++;
        while (c->p < c->end && *c->p != ':') {
            char x = *c->p++;
            if (!((x >= 'A' && x <= 'Z') || sf_lcalpha(x) || sf_digit(x) || x == '+' || x == '/' || x == '='))
                return false;
        }
        if (c->p == c->end)
            return false;
        c->p++;
        *type = SF_BIN;
        return true;
    }
    if (ch == '?') {
        if (c->end - c->p < 2 || (c->p[1] != '0' && c->p[1] != '1'))
            return false;
        *ival = c->p[1] == '1';
        c->p += 2;
        *type = SF_BOOL;
        return true;
    }
    return false;
}

/* parameters = *( ";" *SP key [ "=" bare-item ] ): checked and ignored. */
static bool sf_parameters(sf_cursor_t *c)
{
    while (c->p < c->end && *c->p == ';') {
        c->p++;
        sf_skip_sp(c);
        const char *k;
        size_t kl;
        if (!sf_key(c, &k, &kl))
            return false;
        if (c->p < c->end && *c->p == '=') {
            c->p++;
            sf_type_t t;
            int64_t iv;
            const char *sv;
            size_t sl;
            if (!sf_bare_item(c, &t, &iv, &sv, &sl))
                return false;
        }
    }
    return true;
}

/* inner-list = "(" *SP [ sf-item *( 1*SP sf-item ) *SP ] ")" parameters */
static bool sf_inner_list(sf_cursor_t *c)
{
    c->p++;
    for (;;) {
        sf_skip_sp(c);
        if (c->p == c->end)
            return false;
        if (*c->p == ')') {
            c->p++;
            return sf_parameters(c);
        }
        sf_type_t t;
        int64_t iv;
        const char *sv;
        size_t sl;
        if (!sf_bare_item(c, &t, &iv, &sv, &sl) || !sf_parameters(c))
            return false;
        if (c->p < c->end && *c->p != ' ' && *c->p != ')')
            return false;
    }
}

/* One dictionary member, applied to *cc (a later member with the same key overrides: RFC 8941). */
static void sf_apply(dc_cc_t *cc, const char *k, size_t kl, sf_type_t t, int64_t iv)
{
    for (size_t i = 0; i < sizeof(cc_flags) / sizeof(cc_flags[0]); i++) {
        if (!(strlen(cc_flags[i].name) == kl && memcmp(cc_flags[i].name, k, kl) == 0))
            continue;
        bool *f = (bool *)((char *)cc + cc_flags[i].off);
        *f = t == SF_BOOL && iv == 1;
        if (cc_flags[i].off == offsetof(dc_cc_t, no_cache))
            cc->no_cache_fields = t == SF_STR;
        if (cc_flags[i].off == offsetof(dc_cc_t, private_))
            cc->private_fields = t == SF_STR;
        return;
    }
    for (size_t i = 0; i < sizeof(cc_deltas) / sizeof(cc_deltas[0]); i++) {
        if (strlen(cc_deltas[i].name) == kl && memcmp(cc_deltas[i].name, k, kl) == 0) {
            *(int64_t *)((char *)cc + cc_deltas[i].off) =
                t == SF_INT && iv >= 0 ? (iv > DELTA_MAX ? DELTA_MAX : iv) : -1;
            return;
        }
    }
}

/* RFC 8941 4.2.2, with 4.2's leading and trailing SP discarded; an empty line is refused (RFC 9213
 * 2.1: an empty targeted field is ignored). Parsing into a scratch copy first, so that a line that
 * turns out invalid leaves *cc untouched. */
bool dc_cc_parse_targeted(const char *v, size_t len, dc_cc_t *cc)
{
    if (len == 0)
        return false;
    dc_cc_t tmp = *cc;
    sf_cursor_t c = {v, v + len};
    sf_skip_sp(&c);
    while (c.end > c.p && c.end[-1] == ' ')
        c.end--;
    if (c.p == c.end)
        return false;
    for (;;) {
        const char *k;
        size_t kl;
        if (!sf_key(&c, &k, &kl))
            return false;
        sf_type_t t = SF_BOOL;
        int64_t iv = 1;
        const char *sv;
        size_t sl;
        if (c.p < c.end && *c.p == '=') {
            c.p++;
            if (c.p < c.end && *c.p == '(') {
                if (!sf_inner_list(&c))
                    return false;
                t = SF_INNER;
            } else if (!sf_bare_item(&c, &t, &iv, &sv, &sl) || !sf_parameters(&c)) {
                return false;
            }
        } else if (!sf_parameters(&c)) {
            return false;
        }
        sf_apply(&tmp, k, kl, t, iv);
        while (c.p < c.end && dc_http_is_ows(*c.p))
            c.p++;
        if (c.p == c.end)
            break;
        if (*c.p != ',')
            return false;
        c.p++;
        while (c.p < c.end && dc_http_is_ows(*c.p))
            c.p++;
        if (c.p == c.end)
            return false; /* trailing comma */
    }
    *cc = tmp;
    return true;
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
