/* Character classes of HTTP field values (RFC 9110 5.6), shared by the header parsers. */
#ifndef DC_CORE_HTTPTOK_H
#define DC_CORE_HTTPTOK_H

#include <stdbool.h>
#include <string.h>

/* Optional whitespace: SP or HTAB. */
static inline bool dc_http_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* tchar (RFC 9110 5.6.2). */
static inline bool dc_http_is_tchar(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

#endif
