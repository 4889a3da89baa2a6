#include "cache/jsonobj.h"
#include "core/error.h"

#include <stdbool.h>
#include <string.h>

#define MAX_DEPTH 64

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at '"': returns the byte after the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\') {
            if (++p == end)
                return NULL;
        } else if (*p == '"') {
            return p + 1;
        } else if ((unsigned char)*p < 0x20) {
            return NULL;
        }
    }
    return NULL;
}

/* A member's key and its ':' starting at p: returns the byte after the ':', or NULL. */
static const char *skip_key(const char *p, const char *end)
{
    if (p == end || *p != '"' || (p = skip_string(p, end)) == NULL)
        return NULL;
    p = skip_ws(p, end);
    if (p == end || *p != ':')
        return NULL;
    return p + 1;
}

/* One value starting at p (not whitespace): returns the byte after it, or NULL. */
static const char *skip_value(const char *p, const char *end)
{
    char stack[MAX_DEPTH];
    int depth = 0;
    bool want_value = true; /* inside containers: expecting a value (vs a separator) */
    while (p < end) {
        p = skip_ws(p, end);
        if (p == end)
            return NULL;
        char c = *p;
        if (want_value) {
            if (c == '{' || c == '[') {
                if (depth == MAX_DEPTH)
                    return NULL;
                stack[depth++] = c;
                p = skip_ws(p + 1, end);
                if (p < end && ((c == '{' && *p == '}') || (c == '[' && *p == ']'))) {
                    depth--;
                    p++;
                    want_value = false;
                    if (depth == 0)
                        return p;
                    continue;
                }
                if (c == '{' && (p = skip_key(p, end)) == NULL)
                    return NULL;
                continue;
            }
            if (c == '"') {
                if ((p = skip_string(p, end)) == NULL)
                    return NULL;
            } else if (c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' || c == 'n') {
                const char *s = p;
                while (p < end && (*p == '-' || *p == '+' || *p == '.' || (*p >= '0' && *p <= '9') ||
                                   (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
                    p++;
                if (s[0] >= 'a' && !((p - s == 4 && (memcmp(s, "true", 4) == 0 || memcmp(s, "null", 4) == 0)) ||
                                     (p - s == 5 && memcmp(s, "false", 5) == 0)))
                    return NULL;
            } else {
                return NULL;
            }
            want_value = false;
            if (depth == 0)
                return p;
            continue;
        }
        /* after a value inside a container: ',' or the closer */
        char open = stack[depth - 1];
        if (c == ',') {
            p = skip_ws(p + 1, end);
            if (open == '{' && (p = skip_key(p, end)) == NULL)
                return NULL;
            want_value = true;
        } else if ((open == '{' && c == '}') || (open == '[' && c == ']')) {
            p++;
            if (--depth == 0)
                return p;
        } else {
            return NULL;
        }
    }
    return NULL;
}

int dc_json_object_members(const char *s, size_t len, int (*cb)(void *data, const dc_json_member_t *m), void *data)
{
    const char *p = skip_ws(s, s + len), *end = s + len;
    if (p == end || *p != '{')
        return DC_EPROTO;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}')
        return skip_ws(p + 1, end) == end ? 0 : DC_EPROTO;
    for (;;) {
        if (p == end || *p != '"')
            return DC_EPROTO;
        const char *k = p;
        if ((p = skip_string(p, end)) == NULL)
            return DC_EPROTO;
        dc_json_member_t m = {k + 1, (size_t)(p - k - 2), NULL, 0};
        p = skip_ws(p, end);
        if (p == end || *p != ':')
            return DC_EPROTO;
        p = skip_ws(p + 1, end);
        const char *v = p;
        if ((p = skip_value(p, end)) == NULL)
            return DC_EPROTO;
        m.value = v;
        m.value_len = (size_t)(p - v);
        int rc = cb(data, &m);
        if (rc != 0)
            return rc;
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}')
            return skip_ws(p + 1, end) == end ? 0 : DC_EPROTO;
        return DC_EPROTO;
    }
}
