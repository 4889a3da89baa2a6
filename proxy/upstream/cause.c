#include "upstream/cause.h"

#include <curl/curl.h>
#include <errno.h>
#include <string.h>

static const struct {
    const char *name, *message;
    int status;
    unsigned retry_after_s;
} causes[] = {
#define DC__CAUSE_ROW(id, name, msg, status, ra) {name, msg, status, ra},
    DC_UPSTREAM_CAUSE_MAP(DC__CAUSE_ROW)
#undef DC__CAUSE_ROW
};

static dc_upstream_cause_t checked(dc_upstream_cause_t c)
{
    return (unsigned)c < DC_CAUSE_COUNT ? c : DC_CAUSE_OTHER;
}

const char *dc_upstream_cause_name(dc_upstream_cause_t c)
{
    return causes[checked(c)].name;
}

const char *dc_upstream_cause_message(dc_upstream_cause_t c)
{
    return causes[checked(c)].message;
}

int dc_upstream_cause_status(dc_upstream_cause_t c)
{
    return causes[checked(c)].status;
}

unsigned dc_upstream_cause_retry_after_s(dc_upstream_cause_t c)
{
    return causes[checked(c)].retry_after_s;
}

static bool is_tls_code(CURLcode rc)
{
    switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED:
        return true;
    default:
        return false;
    }
}

dc_upstream_cause_t dc_upstream_cause_classify(int curl_code, int os_errno, unsigned flags)
{
    CURLcode rc = (CURLcode)curl_code;
    if (flags & DC_CAUSE_F_DEADLINE)
        return DC_CAUSE_TIMEOUT;
    if (flags & DC_CAUSE_F_FRAMING)
        return DC_CAUSE_PROTO;
    if (is_tls_code(rc))
        return DC_CAUSE_TLS;
    switch (rc) {
    case CURLE_OK:
        return (flags & DC_CAUSE_F_HEAD) ? DC_CAUSE_NONE : DC_CAUSE_OTHER;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return DC_CAUSE_DNS;
    case CURLE_COULDNT_CONNECT:
        /* a connect that timed out at the OS level is slow, not refused */
        return os_errno == ETIMEDOUT ? DC_CAUSE_TIMEOUT : DC_CAUSE_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return DC_CAUSE_TIMEOUT;
    case CURLE_PARTIAL_FILE:
        /* fewer bytes than the head announced: a lie about the body once the head went out */
        return (flags & DC_CAUSE_F_HEAD) ? DC_CAUSE_PROTO : DC_CAUSE_RESET;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
        return DC_CAUSE_PROTO;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        /* the connection broke under the request, whatever errno says (ECONNRESET, EPIPE, ...) */
        return os_errno == ETIMEDOUT ? DC_CAUSE_TIMEOUT : DC_CAUSE_RESET;
    default:
        return DC_CAUSE_OTHER;
    }
}

/* ---- scrubbing ---- */

/* Replace every occurrence of `s` in buf (NUL-terminated, `*len` bytes) by "***". Shrinks or keeps
 * the length (s is at least 4 bytes). */
static void redact(char *buf, size_t *len, const char *s)
{
    size_t sl = strlen(s);
    char *p = buf;
    while ((p = strstr(p, s)) != NULL) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + sl, *len - (size_t)(p + sl - buf) + 1);
        *len -= sl - 3;
        p += 3;
    }
}

static bool is_space(char c)
{
    return c == ' ';
}

size_t dc_upstream_cause_scrub(char *dst, size_t cap, const char *text, const char *const *secrets, size_t nsecrets)
{
    if (cap == 0)
        return 0;
    char work[1024], out[1024];
    size_t len = 0;
    for (const char *s = text != NULL ? text : ""; *s != '\0' && len + 1 < sizeof(work); s++)
        work[len++] = (unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s;
    work[len] = '\0';
    /* word by word: a URL's query, fragment and userinfo go */
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (is_space(work[i])) {
            out[o++] = work[i++];
            continue;
        }
        size_t end = i;
        while (end < len && !is_space(work[end]))
            end++;
        const char *scheme = strstr(work + i, "://");
        size_t auth = scheme != NULL && (size_t)(scheme - work) < end ? (size_t)(scheme - work) + 3 : i;
        size_t at = 0; /* userinfo ends at the last '@' before the path */
        for (size_t k = auth; k < end && work[k] != '/' && work[k] != '?' && work[k] != '#'; k++)
            if (work[k] == '@')
                at = k + 1;
        for (size_t k = i; k < end; k++) {
            if (at != 0 && k >= auth && k < at)
                continue;
            if (work[k] == '?' || work[k] == '#') /* the rest of the word is the query or fragment */
                break;
            out[o++] = work[k];
        }
        i = end;
    }
    out[o] = '\0';
    /* last, so that nothing removed above can join two pieces of a secret */
    for (size_t i = 0; i < nsecrets; i++)
        if (secrets[i] != NULL && strlen(secrets[i]) >= 4)
            redact(out, &o, secrets[i]);
    if (o >= cap)
        o = cap - 1;
    while (o > 0 && is_space(out[o - 1]))
        o--;
    memcpy(dst, out, o);
    dst[o] = '\0';
    return o;
}
