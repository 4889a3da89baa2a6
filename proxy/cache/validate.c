/* Validation of upstream answers before caching (validate.h). Pure. */
#include "cache/validate.h"
#include "core/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool dc_json_pointer_valid(const char *p)
{
    if (p[0] != '\0' && p[0] != '/')
        return false;
    for (; *p != '\0'; p++)
        if (*p == '~' && p[1] != '0' && p[1] != '1')
            return false;
    return true;
}

/* The token starting at `p` (after its '/'), unescaped into `out` (cap bytes, NUL-terminated).
 * Returns the length, or -1 when it does not fit. */
static long token_unescape(const char *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '~') {
            c = p[i + 1] == '0' ? '~' : '/';
            i++;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return (long)o;
}

/* An array index token: "0" or [1-9][0-9]*, below INT_MAX. Returns it, or -1. */
static long array_index(const char *t, size_t n)
{
    if (n == 0 || n > 9 || (n > 1 && t[0] == '0'))
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] < '0' || t[i] > '9')
            return -1;
        v = v * 10 + (t[i] - '0');
    }
    return v;
}

/* dc_json_pointer_get, and *twice = true (result NULL) when a member on the way is named twice in
 * its object: which one counts differs between parsers (cJSON takes the first, JavaScript the last),
 * so a rule about it could say "good" of an answer its clients read as bad. */
static const cJSON *pointer_get(const cJSON *root, const char *p, bool *twice)
{
    *twice = false;
    if (root == NULL || !dc_json_pointer_valid(p))
        return NULL;
    const cJSON *cur = root;
    char tok[512];
    while (*p == '/' && cur != NULL) {
        p++;
        size_t n = strcspn(p, "/");
        long tl = token_unescape(p, n, tok, sizeof(tok));
        p += n;
        if (tl < 0)
            return NULL; /* no member name we could match is that long */
        if (cJSON_IsArray(cur)) {
            long idx = array_index(tok, (size_t)tl);
            cur = idx < 0 ? NULL : cJSON_GetArrayItem(cur, (int)idx);
        } else if (cJSON_IsObject(cur)) {
            const cJSON *found = NULL;
            for (const cJSON *c = cur->child; c != NULL; c = c->next) {
                if (c->string == NULL || strlen(c->string) != (size_t)tl || memcmp(c->string, tok, (size_t)tl) != 0)
                    continue;
                if (found != NULL) {
                    *twice = true;
                    return NULL;
                }
                found = c;
            }
            cur = found;
        } else {
            cur = NULL;
        }
    }
    return cur;
}

const cJSON *dc_json_pointer_get(const cJSON *root, const char *p)
{
    bool twice;
    return pointer_get(root, p, &twice);
}

static bool digits(const char *s, size_t n, int *v)
{
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int dc_rfc3339_parse_ms(const char *s, size_t len, int64_t *ms)
{
    int Y, M, D, h, m, sec;
    if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' ||
        s[16] != ':' || !digits(s, 4, &Y) || !digits(s + 5, 2, &M) || !digits(s + 8, 2, &D) || !digits(s + 11, 2, &h) ||
        !digits(s + 14, 2, &m) || !digits(s + 17, 2, &sec))
        return DC_EINVAL;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || h > 23 || m > 59 || sec > 60)
        return DC_EINVAL;
    size_t i = 19;
    int frac_ms = 0;
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        int scale = 100;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            frac_ms += (s[i] - '0') * scale;
            scale /= 10;
            i++;
        }
        if (i == start)
            return DC_EINVAL;
    }
    int off_min = 0;
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh, om;
        if (!digits(s + i + 1, 2, &oh) || !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return DC_EINVAL;
        off_min = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return DC_EINVAL;
    }
    if (i != len)
        return DC_EINVAL;
    int64_t days = days_from_civil(Y, (unsigned)M, (unsigned)D);
    int64_t secs = days * 86400 + h * 3600 + m * 60 + (sec > 59 ? 59 : sec) - (int64_t)off_min * 60;
    *ms = secs * 1000 + frac_ms;
    return 0;
}

static int number_ms(double v, int64_t *ms)
{
    if (!isfinite(v) || v < 0 || v > 9.2e15)
        return DC_EINVAL;
    *ms = v >= DC_PAYLOAD_MS_FROM ? (int64_t)v : (int64_t)(v * 1000.0);
    return 0;
}

int dc_payload_time_ms(const cJSON *v, int64_t *ms)
{
    if (v == NULL)
        return DC_EINVAL;
    if (cJSON_IsNumber(v))
        return number_ms(v->valuedouble, ms);
    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return DC_EINVAL;
    const char *s = v->valuestring;
    size_t n = strlen(s);
    if (n > 0 && n < 32 && strspn(s, "0123456789.") == n && s[0] != '.') {
        char *end;
        double d = strtod(s, &end);
        return *end == '\0' ? number_ms(d, ms) : DC_EINVAL;
    }
    int64_t t;
    if (dc_rfc3339_parse_ms(s, n, &t) != 0 || t < 0)
        return DC_EINVAL; /* before 1970: no payload time, as for a negative number */
    *ms = t;
    return 0;
}

bool dc_validate_status_fails(const dc_config_cache_rule_t *rule, int status)
{
    if (rule == NULL || status < 0 || status >= DC_FAIL_STATUS_WORDS * 64)
        return false;
    return (rule->fail_status_bits[status / 64] >> (status % 64)) & 1u;
}

bool dc_validate_wants_body(const dc_config_cache_rule_t *rule)
{
    return rule != NULL && rule->validate_body;
}

/* Shortened config text for a reason: long pointers are cut (the reason stays readable). */
static const char *ptr_name(const char *p)
{
    return p[0] == '\0' ? "(document)" : p;
}

int dc_validate_body(const dc_config_cache_rule_t *rule, const char *body, size_t len, uint64_t now_ms, char *reason,
                     size_t reason_cap)
{
    DC_ASSERT(reason_cap > 0);
    reason[0] = '\0';
    if (!dc_validate_wants_body(rule))
        return 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (root != NULL) { /* one JSON text, nothing after it but whitespace (RFC 8259 2) */
        while (end < body + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
            end++;
        if (end != body + len) {
            cJSON_Delete(root);
            snprintf(reason, reason_cap, "not JSON (bytes after the value)");
            return DC_EINVAL;
        }
    }
    if (root == NULL) {
        snprintf(reason, reason_cap, "not JSON");
        return DC_EINVAL;
    }
    int rc = 0;
    for (size_t i = 0; i < rule->nvalidate_rules && rc == 0; i++) {
        const dc_config_validate_rule_t *vr = &rule->validate_rules[i];
        bool twice;
        const cJSON *v = pointer_get(root, vr->pointer, &twice);
        if (twice) {
            snprintf(reason, reason_cap, "%.200s: a member on the way is named twice", ptr_name(vr->pointer));
            rc = DC_EINVAL;
        } else if (vr->absent && v != NULL) {
            snprintf(reason, reason_cap, "%.200s present", ptr_name(vr->pointer));
            rc = DC_EINVAL;
        } else if (vr->present && v == NULL) {
            snprintf(reason, reason_cap, "%.200s absent", ptr_name(vr->pointer));
            rc = DC_EINVAL;
        } else if (vr->nonempty_array && !(cJSON_IsArray(v) && v->child != NULL)) {
            snprintf(reason, reason_cap, "%.200s not a non-empty array", ptr_name(vr->pointer));
            rc = DC_EINVAL;
        }
    }
    if (rc == 0 && rule->payload_time != NULL && rule->max_payload_age_ms > 0) {
        int64_t ts;
        bool twice;
        const cJSON *t = pointer_get(root, rule->payload_time, &twice);
        /* a clock ahead of ours by more than the age allowed (and a minute of skew) is no clock */
        uint64_t ahead = rule->max_payload_age_ms > 60000 ? rule->max_payload_age_ms : 60000;
        if (twice || dc_payload_time_ms(t, &ts) != 0) {
            snprintf(reason, reason_cap, "%.200s not a timestamp", ptr_name(rule->payload_time));
            rc = DC_EINVAL;
        } else if (ts > (int64_t)now_ms && (uint64_t)(ts - (int64_t)now_ms) > ahead) {
            snprintf(reason, reason_cap, "%.200s in the future", ptr_name(rule->payload_time));
            rc = DC_EINVAL;
        } else if (ts < (int64_t)now_ms && (uint64_t)((int64_t)now_ms - ts) > rule->max_payload_age_ms) {
            snprintf(reason, reason_cap, "%.200s older than max_payload_age", ptr_name(rule->payload_time));
            rc = DC_EINVAL;
        }
    }
    cJSON_Delete(root);
    return rc;
}
