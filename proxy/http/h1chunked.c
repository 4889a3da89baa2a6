/*
 * A strict chunked-body decoder for libh2o's HTTP/1 server, in place of the lenient one libh2o
 * bundles (picohttpparser's phr_decode_chunked).
 *
 * Why: picohttpparser accepts a chunk-size line ended by a bare LF, any bytes before the LF of a
 * chunk extension, any number of CRs before the LF that ends a chunk's data, and bare-LF trailer
 * lines. A front proxy (a CDN reusing its connections to us) that frames the same bytes otherwise
 * would then disagree with us about where a request ends: request smuggling. The gate
 * (http/h1gate.c) judges only a connection's first request; libh2o decodes every later request's
 * chunked body itself, with this function.
 *
 * How: libh2o 2.2.5 calls phr_decode_chunked through its PLT, so this definition in the
 * executable takes its place (ELF symbol interposition: the linker exports an executable's
 * definition of a symbol a linked shared library also defines). The contract, the decoder struct
 * and the meaning of its states are picohttpparser's (so libh2o's phr_decode_chunked_is_in_data
 * reads them correctly); only what is accepted differs (RFC 9112 7.1): a chunk size is hex digits
 * followed by optional whitespace or ';' and an extension of visible characters, and every line
 * ends with CRLF. Anything else is -1 (libh2o answers 400 and closes the connection).
 */
#include "http/h1chunked.h"

#include <h2o.h>

#include "core/fmt.h"

#if !defined(H2O_VERSION_MAJOR) || H2O_VERSION_MAJOR != 2 || H2O_VERSION_MINOR != 2
#error "the chunked decoder replaces libh2o 2.2.x's picohttpparser copy; re-check phr_decode_chunked"
#endif

#include <string.h>
#include <sys/types.h>

/* picohttpparser.h (not installed by Debian's libh2o-dev), v2.2.5 */
struct phr_chunked_decoder {
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char _hex_count; /* in CHUNK_SIZE: digits read; in the line-ending states: 1 after a CR */
    char _state;
};

ssize_t phr_decode_chunked(struct phr_chunked_decoder *decoder, char *buf, size_t *bufsz);
int phr_decode_chunked_is_in_data(struct phr_chunked_decoder *decoder);

/* picohttpparser's state numbers (phr_decode_chunked_is_in_data compares with CHUNK_DATA) */
enum { CHUNK_SIZE, CHUNK_EXT, CHUNK_DATA, CHUNK_CRLF, TRAILER_HEAD, TRAILER_MIDDLE };

/* A line-ending byte in a state where only CRLF may end the line: 1 = the line ended (after
 * CRLF), 0 = go on, -1 = a bare LF, a CR not followed by LF. */
static int line_end(struct phr_chunked_decoder *d, char c)
{
    if (d->_hex_count) { /* the byte before was CR */
        d->_hex_count = 0;
        return c == '\n' ? 1 : -1;
    }
    if (c == '\r') {
        d->_hex_count = 1;
        return 0;
    }
    return c == '\n' ? -1 : 2; /* 2: an ordinary byte */
}

ssize_t phr_decode_chunked(struct phr_chunked_decoder *d, char *buf, size_t *bufsz_io)
{
    size_t dst = 0, src = 0, bufsz = *bufsz_io;
    ssize_t ret = -2; /* incomplete */
    int r;
    for (;;) {
        switch (d->_state) {
        case CHUNK_SIZE:
            for (;; src++) {
                if (src == bufsz)
                    goto out;
                int v = dc_hex_value(buf[src]);
                if (v < 0)
                    break;
                if ((size_t)d->_hex_count == sizeof(size_t) * 2) {
                    ret = -1;
                    goto out;
                }
                d->bytes_left_in_chunk = d->bytes_left_in_chunk * 16 + (size_t)v;
                d->_hex_count++;
            }
            /* after the digits: CRLF, an extension (';') or whitespace before one, nothing else */
            if (d->_hex_count == 0 || (buf[src] != '\r' && buf[src] != ';' && buf[src] != ' ' && buf[src] != '\t')) {
                ret = -1;
                goto out;
            }
            d->_hex_count = 0;
            d->_state = CHUNK_EXT;
            /* fallthrough */
        case CHUNK_EXT:
            /* BWS, ';' extensions (visible characters, SP, HTAB), then CRLF */
            for (;; src++) {
                if (src == bufsz)
                    goto out;
                char c = buf[src];
                if ((r = line_end(d, c)) == 1)
                    break;
                if (r < 0 || (r == 2 && c != '\t' && ((unsigned char)c < 0x20 || c == 0x7f))) {
                    ret = -1;
                    goto out;
                }
            }
            src++;
            if (d->bytes_left_in_chunk == 0) {
                if (!d->consume_trailer)
                    goto complete;
                d->_state = TRAILER_HEAD;
                break;
            }
            d->_state = CHUNK_DATA;
            /* fallthrough */
        case CHUNK_DATA: {
            size_t avail = bufsz - src;
            if (avail < d->bytes_left_in_chunk) {
                if (dst != src)
                    memmove(buf + dst, buf + src, avail);
                src += avail;
                dst += avail;
                d->bytes_left_in_chunk -= avail;
                goto out;
            }
            if (dst != src)
                memmove(buf + dst, buf + src, d->bytes_left_in_chunk);
            src += d->bytes_left_in_chunk;
            dst += d->bytes_left_in_chunk;
            d->bytes_left_in_chunk = 0;
            d->_state = CHUNK_CRLF;
        }
            /* fallthrough */
        case CHUNK_CRLF:
            /* exactly CRLF after the data */
            for (;; src++) {
                if (src == bufsz)
                    goto out;
                r = line_end(d, buf[src]);
                if (r == 1)
                    break;
                if (r != 0) {
                    ret = -1;
                    goto out;
                }
            }
            src++;
            d->_state = CHUNK_SIZE;
            break;
        case TRAILER_HEAD:
            /* CRLF alone ends the body; anything else starts a trailer line */
            if (src == bufsz)
                goto out;
            if (d->_hex_count || buf[src] == '\r' || buf[src] == '\n') {
                r = line_end(d, buf[src++]);
                if (r == 1)
                    goto complete;
                if (r < 0) {
                    ret = -1;
                    goto out;
                }
                break; /* the CR: its LF comes next */
            }
            d->_state = TRAILER_MIDDLE;
            /* fallthrough */
        case TRAILER_MIDDLE:
            for (;; src++) {
                if (src == bufsz)
                    goto out;
                if ((r = line_end(d, buf[src])) == 1)
                    break;
                if (r < 0) {
                    ret = -1;
                    goto out;
                }
            }
            src++;
            d->_state = TRAILER_HEAD;
            break;
        default:
            ret = -1;
            goto out;
        }
    }
complete:
    ret = (ssize_t)(bufsz - src);
out:
    if (dst != src)
        memmove(buf + dst, buf + src, bufsz - src);
    *bufsz_io = dst;
    return ret;
}

int phr_decode_chunked_is_in_data(struct phr_chunked_decoder *d)
{
    return d->_state == CHUNK_DATA;
}

void dc_h1chunked_install(void)
{
    /* nothing to do at run time: being linked is what installs it (see above) */
}

int dc_h1chunked_decode(const char *in, size_t len, char *out, size_t *outlen, size_t *rest)
{
    struct phr_chunked_decoder d = {0};
    d.consume_trailer = 1; /* as libh2o's server sets it */
    memcpy(out, in, len);
    size_t n = len;
    ssize_t r = phr_decode_chunked(&d, out, &n);
    *outlen = n;
    if (r >= 0)
        *rest = (size_t)r;
    return r >= 0 ? 0 : (r == -2 ? 1 : -1);
}
