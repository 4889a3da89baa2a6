#include "core/httptok.h"
#include "cache/encode.h"
#include "core/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ZLIB_CONST
#include <brotli/encode.h>
#include <zlib.h>

#define SCRATCH (64 * 1024)
#define FEED_MAX ((size_t)1 << 30) /* zlib counts input in uInt: feed huge chunks in slices */
#define Q_ONE 1000                 /* weights are qvalues in thousandths */

static const char *const names[DC_ENC_COUNT] = {"identity", "gzip", "br"};

const char *dc_encoding_name(dc_encoding_t e)
{
    return (unsigned)e < DC_ENC_COUNT ? names[e] : NULL;
}

/* ---- header values ---------------------------------------------------------------------------- */

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* ASCII case-insensitive equality of p[0..n) with a lower-case literal. */
static bool ieq(const char *p, size_t n, const char *lit)
{
    size_t i = 0;
    for (; i < n && lit[i] != '\0'; i++)
        if (lower(p[i]) != lit[i])
            return false;
    return i == n && lit[i] == '\0';
}

static bool iends(const char *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n > l && ieq(p + n - l, l, lit); /* n > l: the suffix alone ("+json") is not enough */
}

static const char *skip_ows(const char *p, const char *e)
{
    while (p < e && dc_http_is_ows(*p))
        p++;
    return p;
}

static const char *trim_ows_end(const char *p, const char *e)
{
    while (e > p && dc_http_is_ows(e[-1]))
        e--;
    return e;
}

static const char *skip_token(const char *p, const char *e)
{
    while (p < e && dc_http_is_tchar(*p))
        p++;
    return p;
}

/* A content-coding token to its dc_encoding_t, -1 when we do not implement it. */
static int coding_of(const char *p, size_t n)
{
    if (ieq(p, n, "gzip") || ieq(p, n, "x-gzip"))
        return DC_ENC_GZIP;
    if (ieq(p, n, "br"))
        return DC_ENC_BR;
    if (ieq(p, n, "identity"))
        return DC_ENC_IDENTITY;
    return -1;
}

int dc_encoding_parse(const char *v, size_t len)
{
    if (v == NULL)
        return -1;
    const char *p = v, *e = v + len;
    int found = -1, elements = 0;
    while (p < e) {
        const char *comma = memchr(p, ',', (size_t)(e - p));
        const char *end = comma != NULL ? comma : e;
        const char *s = skip_ows(p, end), *t = trim_ows_end(s, end);
        if (s < t) {
            if (++elements > 1 || skip_token(s, t) != t)
                return -1;
            found = coding_of(s, (size_t)(t - s));
        }
        p = comma != NULL ? comma + 1 : e;
    }
    return found;
}

bool dc_encoding_compressible_type(const char *ctype, size_t len)
{
    if (ctype == NULL)
        return false;
    const char *e = ctype + len;
    const char *type = skip_ows(ctype, e), *slash = skip_token(type, e);
    if (slash == type || slash == e || *slash != '/')
        return false;
    const char *sub = slash + 1, *sub_end = skip_token(sub, e), *rest = skip_ows(sub_end, e);
    if (sub_end == sub || (rest < e && *rest != ';'))
        return false;
    size_t tlen = (size_t)(slash - type), slen = (size_t)(sub_end - sub);
    if (iends(sub, slen, "+json") || iends(sub, slen, "+xml"))
        return true;
    if (ieq(type, tlen, "text"))
        return true;
    return ieq(type, tlen, "application") &&
           (ieq(sub, slen, "json") || ieq(sub, slen, "javascript") || ieq(sub, slen, "xml"));
}

/* RFC 9110 qvalue: "0" ["." 0*3DIGIT] / "1" ["." 0*3("0")], in thousandths; -1 when malformed. */
static int parse_qvalue(const char *p, size_t n)
{
    if (n == 0 || (p[0] != '0' && p[0] != '1') || (n > 1 && p[1] != '.') || n > 5)
        return -1;
    int q = (p[0] - '0') * Q_ONE, scale = Q_ONE / 10;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        q += (p[i] - '0') * scale;
    }
    return q <= Q_ONE ? q : -1;
}

/* One Accept-Encoding list element [p, e): sets *token and returns its weight (Q_ONE when no q),
 * or -1 when the element is empty or garbage. */
static int parse_element(const char *p, const char *e, const char **token, size_t *tlen)
{
    p = skip_ows(p, e);
    const char *t = skip_token(p, e);
    if (t == p)
        return -1;
    *token = p;
    *tlen = (size_t)(t - p);
    int q = Q_ONE;
    bool seen_q = false;
    p = skip_ows(t, e);
    while (p < e) {
        if (*p != ';')
            return -1; /* a second token, or junk after the coding */
        const char *semi = memchr(p + 1, ';', (size_t)(e - p - 1));
        const char *pend = semi != NULL ? semi : e;
        const char *name = skip_ows(p + 1, pend), *name_end = skip_token(name, pend);
        const char *eq = skip_ows(name_end, pend);
        p = pend;
        if (name == pend)
            continue; /* empty parameter: ";;" or a trailing ';' */
        if (name_end == name || eq == pend || *eq != '=')
            return -1; /* not name=value */
        if (!ieq(name, (size_t)(name_end - name), "q"))
            continue; /* other parameters carry no meaning for us */
        const char *v = skip_ows(eq + 1, pend), *v_end = trim_ows_end(v, pend);
        if (seen_q || (q = parse_qvalue(v, (size_t)(v_end - v))) < 0)
            return -1;
        seen_q = true;
    }
    return q;
}

dc_encoding_t dc_encoding_negotiate(const char *accept, size_t len, unsigned available_mask)
{
    if (accept == NULL)
        return DC_ENC_IDENTITY;
    int listed[DC_ENC_COUNT], star = -1; /* weights; -1 = not listed */
    for (int i = 0; i < DC_ENC_COUNT; i++)
        listed[i] = -1;
    const char *p = accept, *e = accept + len;
    while (p < e) {
        const char *comma = memchr(p, ',', (size_t)(e - p));
        const char *end = comma != NULL ? comma : e;
        const char *token;
        size_t tlen;
        int q = parse_element(p, end, &token, &tlen);
        p = comma != NULL ? comma + 1 : e;
        if (q < 0)
            continue;
        int c = coding_of(token, tlen);
        int *slot = c >= 0 ? &listed[c] : ieq(token, tlen, "*") ? &star : NULL;
        if (slot != NULL && (*slot < 0 || q < *slot))
            *slot = q; /* duplicates: the lowest weight wins */
    }

    /* strict '>' in preference order gives ties to br, then gzip, then identity */
    static const dc_encoding_t order[DC_ENC_COUNT] = {DC_ENC_BR, DC_ENC_GZIP, DC_ENC_IDENTITY};
    dc_encoding_t best = DC_ENC_IDENTITY;
    int best_q = 0;
    for (int i = 0; i < DC_ENC_COUNT; i++) {
        dc_encoding_t c = order[i];
        if (c != DC_ENC_IDENTITY && (available_mask & (1u << c)) == 0)
            continue;
        int q = listed[c] >= 0 ? listed[c] : star >= 0 ? star : 0;
        if (q > best_q) {
            best = c;
            best_q = q;
        }
    }
    return best;
}

bool dc_encoding_worth_it(size_t identity_len, size_t compressed_len)
{
    /* floor(0.9 * n) = n - ceil(n / 10), without the overflow of 9 * n */
    size_t limit = identity_len - (identity_len / 10 + (identity_len % 10 != 0));
    return identity_len > 0 && compressed_len <= limit;
}

/* ---- codecs ----------------------------------------------------------------------------------- */

/* Output staging: bytes are produced into `buf` and appended to `out` whenever it fills, so `out`'s
 * first chunk can be sized exactly when the whole output fits in one buffer (most cached bodies). */
typedef struct sink {
    dc_body_t *out;
    char *buf;
    size_t len;      /* bytes waiting in buf */
    size_t appended; /* bytes already in out */
} sink_t;

static void sink_flush(sink_t *s, bool last)
{
    if (s->out->nchunks == 0) /* still empty: re-initialising it allocates nothing, frees nothing */
        dc_body_init(s->out, last ? s->len : SCRATCH);
    dc_body_append(s->out, s->buf, s->len);
    s->appended += s->len;
    s->len = 0;
}

static void sink_open(sink_t *s, dc_body_t *out)
{
    dc_body_init(out, 0);
    s->out = out;
    s->buf = dc_malloc(SCRATCH);
    s->len = s->appended = 0;
}

/* Returns err; on error leaves out empty and initialised. */
static int sink_close(sink_t *s, int err)
{
    if (err == 0) {
        sink_flush(s, true);
    } else {
        dc_body_dispose(s->out);
        dc_body_init(s->out, 0); /* a disposed body is not appendable; keep the promise "initialised" */
    }
    free(s->buf);
    return err;
}

/* The caller must hand over a whole body: released chunks (data == NULL) are a contract violation. */
static const char *chunk_data(const dc_body_t *in, size_t i)
{
    DC_ASSERT(in->chunks[i].data != NULL || in->chunks[i].len == 0);
    return in->chunks[i].data;
}

/* zlib does not need zeroed memory (its own zcalloc is malloc); not zeroing ~256 KiB of deflate
 * state per call halves the fixed cost of compressing a small body. */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    return dc_malloc((size_t)items * size);
}

static void z_free(voidpf opaque, voidpf p)
{
    free(p);
}

static void *br_alloc(void *opaque, size_t n)
{
    return dc_malloc(n);
}

static void br_free(void *opaque, void *p)
{
    free(p);
}

/* Runs deflate over [p, p+n) with `flush` until it has consumed the input (and, for Z_FINISH, ended
 * the stream), moving output into the sink. */
static int deflate_feed(z_stream *z, sink_t *s, const char *p, size_t n, int flush)
{
    do {
        size_t take = n < FEED_MAX ? n : FEED_MAX;
        z->next_in = (const Bytef *)p;
        z->avail_in = (uInt)take;
        p += take;
        n -= take;
        int f = n == 0 ? flush : Z_NO_FLUSH;
        int ret;
        do {
            z->next_out = (Bytef *)s->buf + s->len;
            z->avail_out = (uInt)(SCRATCH - s->len);
            ret = deflate(z, f);
            if (ret == Z_STREAM_ERROR)
                return DC_EIO;
            s->len = SCRATCH - z->avail_out;
            if (s->len == SCRATCH)
                sink_flush(s, false);
        } while (z->avail_in > 0 || (f == Z_FINISH && ret != Z_STREAM_END));
    } while (n > 0);
    return 0;
}

/* Smallest window (log2) covering `len` bytes, within [lo, hi]: a body never needs a window larger
 * than itself, and the encoders' memory (and set-up time) grows with the window. */
static int window_bits_for(size_t len, int lo, int hi)
{
    int b = lo;
    while (b < hi && ((size_t)1 << b) < len)
        b++;
    return b;
}

static int encode_gzip(const dc_body_t *in, sink_t *s)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    z.zalloc = z_alloc;
    z.zfree = z_free;
    /* A window no larger than the body: zlib's state is (1 << (wbits + 2)) + (1 << (mem + 9)) bytes,
     * ~256 KiB at 15/8; a 2 KiB quote needs ~10 KiB, and its setup cost follows. */
    int wbits = window_bits_for(in->len, 9, 15);
    int mem = wbits - 7 < 1 ? 1 : (wbits - 7 > 8 ? 8 : wbits - 7);
    if (deflateInit2(&z, 6, Z_DEFLATED, wbits + 16, mem, Z_DEFAULT_STRATEGY) != Z_OK)
        return DC_EIO;
    int err = 0;
    for (size_t i = 0; i < in->nchunks && err == 0; i++)
        if (in->chunks[i].len > 0)
            err = deflate_feed(&z, s, chunk_data(in, i), in->chunks[i].len, Z_NO_FLUSH);
    if (err == 0)
        err = deflate_feed(&z, s, "", 0, Z_FINISH);
    deflateEnd(&z);
    return err;
}

/* One BrotliEncoderCompressStream loop: PROCESS until the input is consumed and no output is
 * pending, FINISH until the stream is finished. */
static int brotli_feed(BrotliEncoderState *b, sink_t *s, const char *p, size_t n, BrotliEncoderOperation op)
{
    const uint8_t *next_in = (const uint8_t *)p;
    size_t avail_in = n;
    for (;;) {
        bool done = op == BROTLI_OPERATION_FINISH ? BrotliEncoderIsFinished(b)
                                                  : avail_in == 0 && !BrotliEncoderHasMoreOutput(b);
        if (done)
            return 0;
        uint8_t *next_out = (uint8_t *)s->buf + s->len;
        size_t avail_out = SCRATCH - s->len;
        if (!BrotliEncoderCompressStream(b, op, &avail_in, &next_in, &avail_out, &next_out, NULL))
            return DC_EIO;
        s->len = SCRATCH - avail_out;
        if (s->len == SCRATCH)
            sink_flush(s, false);
    }
}

static int encode_br(const dc_body_t *in, sink_t *s)
{
    BrotliEncoderState *b = BrotliEncoderCreateInstance(br_alloc, br_free, NULL);
    if (b == NULL)
        return DC_EIO;
    uint32_t hint = in->len < ((size_t)1 << 30) ? (uint32_t)in->len : (uint32_t)1 << 30;
    int err = 0;
    if (!BrotliEncoderSetParameter(b, BROTLI_PARAM_QUALITY, 5) ||
        !BrotliEncoderSetParameter(b, BROTLI_PARAM_LGWIN, (uint32_t)window_bits_for(in->len, 10, 22)) ||
        !BrotliEncoderSetParameter(b, BROTLI_PARAM_MODE, BROTLI_MODE_TEXT) ||
        !BrotliEncoderSetParameter(b, BROTLI_PARAM_SIZE_HINT, hint))
        err = DC_EIO;
    for (size_t i = 0; i < in->nchunks && err == 0; i++)
        if (in->chunks[i].len > 0)
            err = brotli_feed(b, s, chunk_data(in, i), in->chunks[i].len, BROTLI_OPERATION_PROCESS);
    if (err == 0)
        err = brotli_feed(b, s, "", 0, BROTLI_OPERATION_FINISH);
    BrotliEncoderDestroyInstance(b);
    return err;
}

int dc_encode_body(dc_encoding_t enc, const dc_body_t *in, dc_body_t *out)
{
    if (enc != DC_ENC_GZIP && enc != DC_ENC_BR) {
        dc_body_init(out, 0);
        return DC_EINVAL;
    }
    sink_t s;
    sink_open(&s, out);
    int err = enc == DC_ENC_GZIP ? encode_gzip(in, &s) : encode_br(in, &s);
    return sink_close(&s, err);
}

/* Inflates [p, p+n) into the sink. *ret carries the last inflate() result across calls: after
 * Z_STREAM_END, more input starts a new gzip member. */
static int inflate_feed(z_stream *z, sink_t *s, const char *p, size_t n, size_t max_out, int *ret)
{
    do {
        size_t take = n < FEED_MAX ? n : FEED_MAX;
        z->next_in = (const Bytef *)p;
        z->avail_in = (uInt)take;
        p += take;
        n -= take;
        for (;;) {
            if (*ret == Z_STREAM_END) {
                if (z->avail_in == 0)
                    break;
                if (inflateReset(z) != Z_OK) /* the next member of a multi-member file */
                    return DC_EIO;
            }
            z->next_out = (Bytef *)s->buf + s->len;
            z->avail_out = (uInt)(SCRATCH - s->len);
            *ret = inflate(z, Z_NO_FLUSH);
            if (*ret == Z_BUF_ERROR && z->avail_in == 0) { /* no progress possible: needs more input */
                *ret = Z_OK;
                break;
            }
            /* the size check comes first so that the verdict does not depend on chunk boundaries:
             * output decoded before a corruption counts whether or not the corrupt bytes were
             * already in this call's input */
            s->len = SCRATCH - z->avail_out;
            if (s->appended + s->len > max_out)
                return DC_ETOOBIG;
            if (*ret != Z_OK && *ret != Z_STREAM_END)
                return DC_EINVAL; /* Z_DATA_ERROR, Z_NEED_DICT (never in gzip), Z_STREAM_ERROR */
            bool full = s->len == SCRATCH;
            if (full)
                sink_flush(s, false);
            if (z->avail_in == 0 && !full && *ret == Z_OK)
                break; /* everything this input can give has been produced */
        }
    } while (n > 0);
    return 0;
}

int dc_decode_gzip(const dc_body_t *in, dc_body_t *out, size_t max_out)
{
    sink_t s;
    sink_open(&s, out);
    if (in->len == 0)
        return sink_close(&s, 0);
    z_stream z;
    memset(&z, 0, sizeof(z));
    z.zalloc = z_alloc;
    z.zfree = z_free;
    if (inflateInit2(&z, 15 + 16) != Z_OK) /* gzip wrapper only, not zlib or raw deflate */
        return sink_close(&s, DC_EIO);
    int err = 0, ret = Z_OK;
    for (size_t i = 0; i < in->nchunks && err == 0; i++)
        if (in->chunks[i].len > 0)
            err = inflate_feed(&z, &s, chunk_data(in, i), in->chunks[i].len, max_out, &ret);
    if (err == 0 && ret != Z_STREAM_END)
        err = DC_EINVAL; /* truncated */
    inflateEnd(&z);
    return sink_close(&s, err);
}
