/* Unit tests for cache/encode.c: Accept-Encoding negotiation table, Content-Encoding and media type
 * parsing, gzip / br round-trips checked with independent decoders (zlib inflate, BrotliDecoder) on
 * many-small-chunk and 20 MB bodies, the bounded gzip decoder (corrupt input, zip-bomb guard), the
 * worth-it threshold, and the compression throughput on ~10 MB of Jupiter-price-like JSON. */
#include "cmocka_prelude.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <brotli/decode.h>
#include <zlib.h>

#include "cache/encode.h"
#include "core/error.h"

#define GZ (1u << DC_ENC_GZIP)
#define BR (1u << DC_ENC_BR)
#define ALL (GZ | BR)
#define MB (1024.0 * 1024.0)

static const char *const enc_names[] = {"identity", "gzip", "br"};

/* A heap copy of exactly n bytes, no NUL: ASan reports any read past the value. Zeroed first: an
 * empty value still gets one (initialised) byte, which -O3 would otherwise see read uninitialised. */
static char *exact(const char *s, size_t n)
{
    char *p = calloc(n ? n : 1, 1);
    memcpy(p, s, n);
    return p;
}

static void nego(const char *accept, unsigned mask, dc_encoding_t want)
{
    char *c = accept != NULL ? exact(accept, strlen(accept)) : NULL;
    dc_encoding_t got = dc_encoding_negotiate(c, accept != NULL ? strlen(accept) : 0, mask);
    if (got != want)
        print_error("Accept-Encoding %s%s%s, mask %u: got %s, want %s\n", accept ? "\"" : "",
                    accept ? accept : "(absent)", accept ? "\"" : "", mask, enc_names[got], enc_names[want]);
    free(c);
    assert_int_equal(got, want);
}

static void ce(const char *v, int want)
{
    char *c = exact(v, strlen(v));
    int got = dc_encoding_parse(c, strlen(v));
    if (got != want)
        print_error("Content-Encoding \"%s\": got %d, want %d\n", v, got, want);
    free(c);
    assert_int_equal(got, want);
}

static void ctype(const char *v, bool want)
{
    char *c = exact(v, strlen(v));
    bool got = dc_encoding_compressible_type(c, strlen(v));
    if (got != want)
        print_error("Content-Type \"%s\": got %d, want %d\n", v, got, want);
    free(c);
    assert_int_equal(got, want);
}

/* ---- bodies and reference codecs ---------------------------------------------------------------- */

/* Body filled the way a fill does it: dc_body_append in `piece`-byte reads (chunks of 16 KiB..1 MiB). */
static void body_appended(dc_body_t *b, const char *p, size_t n, size_t piece)
{
    dc_body_init(b, 0);
    for (size_t o = 0; o < n; o += piece)
        dc_body_append(b, p + o, n - o < piece ? n - o : piece);
}

/* Body whose chunks are exactly 0..96 bytes (cycling, empty ones included), each its own exact-size
 * allocation. dc_body_append never makes such chunks, but the struct is public and the codecs must
 * not depend on chunk sizes; ASan sees any read past a chunk. */
static void body_chunked(dc_body_t *b, const char *p, size_t n)
{
    dc_body_init(b, 0);
    size_t o = 0;
    for (size_t k = 0; o < n || k == 0; k++) {
        size_t take = (k * 37) % 97;
        take = take < n - o ? take : n - o;
        if (b->nchunks == b->capchunks) {
            b->capchunks = b->capchunks ? 2 * b->capchunks : 16;
            b->chunks = dc_realloc(b->chunks, b->capchunks * sizeof(*b->chunks));
        }
        dc_body_chunk_t *c = &b->chunks[b->nchunks++];
        c->data = dc_malloc(take);
        memcpy(c->data, p + o, take);
        c->len = c->cap = take;
        b->len += take;
        o += take;
    }
}

/* Reference gzip (zlib directly, not the code under test); optional header name. */
static char *gzip_ref(const char *p, size_t n, const char *fname, size_t *outlen)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    gz_header h;
    memset(&h, 0, sizeof(h));
    if (fname != NULL) {
        h.name = (Bytef *)fname;
        h.comment = (Bytef *)"a comment";
        h.hcrc = 1;
        assert_int_equal(deflateSetHeader(&z, &h), Z_OK);
    }
    size_t cap = deflateBound(&z, n) + 64;
    char *out = malloc(cap);
    z.next_in = (Bytef *)p;
    z.avail_in = (uInt)n;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    *outlen = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

/* Decompress a gzip body with zlib inflate, streaming over its chunks, and compare with want. */
static void check_gunzip(const dc_body_t *gz, const char *want, size_t want_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    char *got = malloc(want_len + 1);
    z.next_out = (Bytef *)got;
    z.avail_out = (uInt)(want_len + 1);
    int ret = Z_OK;
    for (size_t i = 0; i < gz->nchunks; i++) {
        if (gz->chunks[i].len == 0)
            continue;
        assert_int_not_equal(ret, Z_STREAM_END); /* nothing after the end of the stream */
        z.next_in = (Bytef *)gz->chunks[i].data;
        z.avail_in = (uInt)gz->chunks[i].len;
        ret = inflate(&z, Z_NO_FLUSH);
        assert_true(ret == Z_OK || ret == Z_STREAM_END);
        assert_int_equal(z.avail_in, 0);
    }
    assert_int_equal(ret, Z_STREAM_END);
    assert_int_equal(z.total_out, want_len);
    assert_memory_equal(got, want, want_len);
    inflateEnd(&z);
    free(got);
}

/* Same with the streaming BrotliDecoder. */
static void check_unbrotli(const dc_body_t *br, const char *want, size_t want_len)
{
    BrotliDecoderState *d = BrotliDecoderCreateInstance(NULL, NULL, NULL);
    char *got = malloc(want_len + 1);
    uint8_t *next_out = (uint8_t *)got;
    size_t avail_out = want_len + 1;
    BrotliDecoderResult r = BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT;
    for (size_t i = 0; i < br->nchunks; i++) {
        assert_int_equal(r, BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT);
        const uint8_t *next_in = (const uint8_t *)br->chunks[i].data;
        size_t avail_in = br->chunks[i].len;
        r = BrotliDecoderDecompressStream(d, &avail_in, &next_in, &avail_out, &next_out, NULL);
        assert_int_equal(avail_in, 0);
    }
    assert_int_equal(r, BROTLI_DECODER_RESULT_SUCCESS);
    assert_int_equal((size_t)((char *)next_out - got), want_len);
    assert_memory_equal(got, want, want_len);
    BrotliDecoderDestroyInstance(d);
    free(got);
}

static void check_roundtrip(dc_encoding_t enc, const dc_body_t *in, const char *flat)
{
    dc_body_t out;
    assert_int_equal(dc_encode_body(enc, in, &out), 0);
    assert_true(out.len > 0);
    if (enc == DC_ENC_GZIP)
        check_gunzip(&out, flat, in->len);
    else
        check_unbrotli(&out, flat, in->len);
    if (enc == DC_ENC_GZIP) { /* and our own decoder agrees */
        dc_body_t back;
        assert_int_equal(dc_decode_gzip(&out, &back, in->len), 0);
        assert_int_equal(back.len, in->len);
        char *b = dc_body_flatten(&back);
        assert_memory_equal(b, flat, in->len);
        free(b);
        dc_body_dispose(&back);
    }
    dc_body_dispose(&out);
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap *= 2;
        b->p = realloc(b->p, b->cap);
    }
}

/* A Jupiter Price API (showExtraInfo) style JSON array of about `want` bytes: random base58 mints,
 * prices with many digits, unix timestamps; deterministic. Caller frees. */
static char *jupiter_json(size_t want, size_t *len)
{
    static const char b58[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    static const char *const conf[] = {"high", "medium", "low"};
    uint64_t s = 0x9E3779B97F4A7C15u;
    sbuf_t b = {malloc(4096), 0, 4096};
    sb_printf(&b, "[");
    for (size_t k = 0; b.len < want; k++) {
        char mint[45], sym[6];
        size_t ml = 43 + rng_next(&s) % 2;
        for (size_t i = 0; i < ml; i++)
            mint[i] = b58[rng_next(&s) % 58];
        mint[ml] = '\0';
        for (size_t i = 0; i < 5; i++)
            sym[i] = (char)('A' + rng_next(&s) % 26);
        sym[3 + rng_next(&s) % 3] = '\0';
        double price = (double)(rng_next(&s) % 100000000) / (double)(1 + rng_next(&s) % 1000000);
        unsigned long t = 1726230000ul + (unsigned long)(rng_next(&s) % 100000);
        double d[6];
        for (int i = 0; i < 6; i++)
            d[i] = (double)(rng_next(&s) % 1000000) / 1e5;
        sb_printf(&b,
                  "%s{\"id\":\"%s\",\"mintSymbol\":\"%s\",\"vsToken\":\"EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v\","
                  "\"vsTokenSymbol\":\"USDC\",\"price\":\"%.12g\",\"usdPrice\":%.15g,\"blockId\":%lu,\"decimals\":%d,"
                  "\"priceChange24h\":%.6f,\"extraInfo\":{\"lastSwappedPrice\":{\"lastJupiterSellAt\":%lu,"
                  "\"lastJupiterSellPrice\":\"%.12g\",\"lastJupiterBuyAt\":%lu,\"lastJupiterBuyPrice\":\"%.12g\"},"
                  "\"quotedPrice\":{\"buyPrice\":\"%.12g\",\"buyAt\":%lu,\"sellPrice\":\"%.12g\",\"sellAt\":%lu},"
                  "\"confidenceLevel\":\"%s\",\"depth\":{\"buyPriceImpactRatio\":{\"depth\":{\"10\":%.6f,\"100\":%.6f,"
                  "\"1000\":%.6f},\"timestamp\":%lu},\"sellPriceImpactRatio\":{\"depth\":{\"10\":%.6f,\"100\":%.6f,"
                  "\"1000\":%.6f},\"timestamp\":%lu}}}}",
                  k ? "," : "", mint, sym, price, price * 1.0000123, 348004023ul + (unsigned long)k,
                  (int)(rng_next(&s) % 10), d[0] - 5.0, t, price * 0.9993, t - 7, price * 1.0004, price * 1.0011, t,
                  price * 0.9987, t, conf[rng_next(&s) % 3], d[0], d[1], d[2], t, d[3], d[4], d[5], t);
    }
    sb_printf(&b, "]");
    *len = b.len;
    return b.p;
}

/* 20 MB that does not compress to nothing: JSON interleaved with runs of random bytes. */
static char *mixed_body(size_t n)
{
    size_t jl;
    char *json = jupiter_json(n / 2, &jl);
    char *p = malloc(n);
    uint64_t s = 42;
    for (size_t o = 0; o < n;) {
        size_t run = 1 + rng_next(&s) % 70000;
        run = run < n - o ? run : n - o;
        if (rng_next(&s) % 2) {
            size_t from = rng_next(&s) % (jl - run);
            memcpy(p + o, json + from, run);
        } else {
            for (size_t i = 0; i < run; i++)
                p[o + i] = (char)rng_next(&s);
        }
        o += run;
    }
    free(json);
    return p;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void assert_empty_body(const dc_body_t *b)
{
    assert_int_equal(b->len, 0);
    assert_int_equal(b->nchunks, 0);
    assert_int_equal(dc_body_allocated(b), 0);
}

/* ---- names, Content-Encoding, media types ----------------------------------------------------- */

static void test_names(void **state)
{
    assert_string_equal(dc_encoding_name(DC_ENC_IDENTITY), "identity");
    assert_string_equal(dc_encoding_name(DC_ENC_GZIP), "gzip");
    assert_string_equal(dc_encoding_name(DC_ENC_BR), "br");
    assert_null(dc_encoding_name(DC_ENC_COUNT));
    assert_null(dc_encoding_name((dc_encoding_t)-1));
    for (int e = 0; e < DC_ENC_COUNT; e++)
        ce(dc_encoding_name((dc_encoding_t)e), e);
}

static void test_parse_content_encoding(void **state)
{
    ce("gzip", DC_ENC_GZIP);
    ce("x-gzip", DC_ENC_GZIP);
    ce("br", DC_ENC_BR);
    ce("identity", DC_ENC_IDENTITY);
    ce("GZIP", DC_ENC_GZIP);
    ce("Br", DC_ENC_BR);
    ce("X-Gzip", DC_ENC_GZIP);
    ce("  gzip\t", DC_ENC_GZIP);
    ce(", gzip ,", DC_ENC_GZIP); /* empty list elements are allowed (RFC 9110 5.6.1) */
    assert_int_equal(dc_encoding_parse("gzipXYZ", 4), DC_ENC_GZIP); /* length-bounded, not NUL */
}

static void test_parse_content_encoding_rejects(void **state)
{
    ce("", -1);
    ce("   ", -1);
    ce(",", -1);
    ce("deflate", -1);
    ce("zstd", -1);
    ce("compress", -1);
    ce("gzip, br", -1); /* stacked codings */
    ce("gzip, gzip", -1);
    ce("gzip;q=1", -1);
    ce("gzip br", -1);
    ce("gzi", -1);
    ce("gzipp", -1);
    ce("*", -1);
    ce("\"gzip\"", -1);
    assert_int_equal(dc_encoding_parse("gz\0ip", 5), -1);
    assert_int_equal(dc_encoding_parse(NULL, 0), -1);
}

static void test_compressible_types(void **state)
{
    ctype("application/json", true);
    ctype("application/json; charset=utf-8", true);
    ctype("Application/JSON;charset=UTF-8", true);
    ctype("  application/json  ", true);
    ctype("text/html", true);
    ctype("text/plain; charset=us-ascii", true);
    ctype("text/css", true);
    ctype("TEXT/CSV", true);
    ctype("application/javascript", true);
    ctype("application/xml", true);
    ctype("application/ld+json", true);
    ctype("application/problem+json", true);
    ctype("application/vnd.api+json; ext=bulk", true);
    ctype("application/atom+xml", true);
    ctype("image/svg+xml", true);
    ctype("IMAGE/SVG+XML", true);
}

static void test_incompressible_types(void **state)
{
    ctype("", false);
    ctype("image/png", false);
    ctype("image/jpeg", false);
    ctype("application/octet-stream", false);
    ctype("application/gzip", false);
    ctype("application/zip", false);
    ctype("video/mp4", false);
    ctype("application/jsonp", false);
    ctype("application/+json", false); /* the suffix alone is no subtype */
    ctype("application/json+zip", false);
    ctype("text", false);
    ctype("text/", false);
    ctype("/json", false);
    ctype("application/json garbage", false);
    ctype("application /json", false);
    ctype("multipart/form-data; boundary=x", false);
    assert_false(dc_encoding_compressible_type(NULL, 0));
    assert_false(dc_encoding_compressible_type("text/html", 4)); /* "text" */
}

/* ---- negotiation ------------------------------------------------------------------------------ */

static void test_negotiate_absent_and_empty(void **state)
{
    nego(NULL, ALL, DC_ENC_IDENTITY);
    nego(NULL, 0, DC_ENC_IDENTITY);
    nego("", ALL, DC_ENC_IDENTITY); /* empty value: the client wants no coding */
    nego("  , ,", ALL, DC_ENC_IDENTITY);
}

static void test_negotiate_single(void **state)
{
    nego("gzip", ALL, DC_ENC_GZIP);
    nego("br", ALL, DC_ENC_BR);
    nego("identity", ALL, DC_ENC_IDENTITY);
    nego("x-gzip", ALL, DC_ENC_GZIP);
    nego("deflate", ALL, DC_ENC_IDENTITY);
    nego("zstd, deflate, compress", ALL, DC_ENC_IDENTITY);
}

static void test_negotiate_lists(void **state)
{
    nego("gzip, br", ALL, DC_ENC_BR);
    nego("br, gzip", ALL, DC_ENC_BR);
    nego("gzip, deflate, br, zstd", ALL, DC_ENC_BR); /* what browsers send */
    nego("gzip, deflate", ALL, DC_ENC_GZIP);
    nego("gzip, identity", ALL, DC_ENC_GZIP); /* tie: gzip before identity */
}

static void test_negotiate_weights(void **state)
{
    nego("br;q=0.5, gzip;q=0.8", ALL, DC_ENC_GZIP);
    nego("br;q=0.5, gzip;q=0.8", BR, DC_ENC_BR);
    nego("br;q=0.8, gzip;q=0.5", ALL, DC_ENC_BR);
    nego("br;q=0.5, gzip;q=0.5", ALL, DC_ENC_BR);
    nego("gzip;q=0.5, identity", ALL, DC_ENC_IDENTITY); /* explicit identity q=1 beats gzip 0.5 */
    nego("gzip;q=0.5, identity;q=0.5", ALL, DC_ENC_GZIP);
    nego("gzip;q=0.5", ALL, DC_ENC_GZIP); /* unlisted identity is only the fallback */
    nego("gzip;q=0.001, br;q=0.002", ALL, DC_ENC_BR);
    nego("br;q=0.999, gzip", ALL, DC_ENC_GZIP);
}

static void test_negotiate_star(void **state)
{
    nego("*", ALL, DC_ENC_BR);
    nego("*", GZ, DC_ENC_GZIP);
    nego("*", 0, DC_ENC_IDENTITY);
    nego("*;q=0", ALL, DC_ENC_IDENTITY); /* nothing acceptable: still identity, never 406 */
    nego("gzip;q=0, *", ALL, DC_ENC_BR);
    nego("gzip;q=0, *", GZ, DC_ENC_IDENTITY); /* "*" covers identity too */
    nego("br;q=0.9, *", ALL, DC_ENC_GZIP);    /* "*" covers gzip with q=1 */
    nego("*;q=0.5, gzip", ALL, DC_ENC_GZIP);
    nego("*;q=0.5, identity", ALL, DC_ENC_IDENTITY);
    nego("*;q=0, gzip", ALL, DC_ENC_GZIP);
    nego("*;q=0, br;q=0.1", ALL, DC_ENC_BR);
}

static void test_negotiate_identity_refused(void **state)
{
    nego("identity;q=0", ALL, DC_ENC_IDENTITY);
    nego("identity;q=0", 0, DC_ENC_IDENTITY);
    nego("identity;q=0, *;q=0", ALL, DC_ENC_IDENTITY);
    nego("identity;q=0, gzip", ALL, DC_ENC_GZIP);
    nego("identity;q=0, gzip", BR, DC_ENC_IDENTITY);
    nego("identity;q=0, *", ALL, DC_ENC_BR);
}

static void test_negotiate_case(void **state)
{
    nego("GZIP", ALL, DC_ENC_GZIP);
    nego("Br", ALL, DC_ENC_BR);
    nego("BR;Q=0.5, GZIP;Q=0.8", ALL, DC_ENC_GZIP);
    nego("Identity;Q=0, X-GZIP", ALL, DC_ENC_GZIP);
}

static void test_negotiate_whitespace(void **state)
{
    nego("  gzip ,\tbr  ", ALL, DC_ENC_BR);
    nego("gzip ; q=0.9 , br ; q = 0.4", ALL, DC_ENC_GZIP);
    nego("br;q=0.4,gzip;q=0.9", ALL, DC_ENC_GZIP);
    nego(",,gzip,,", ALL, DC_ENC_GZIP);
    nego("\tbr\t;\tq=1\t", ALL, DC_ENC_BR);
}

static void test_negotiate_garbage(void **state)
{
    nego(";;q=", ALL, DC_ENC_IDENTITY);
    nego(";;q=, gzip", ALL, DC_ENC_GZIP);
    nego("gzip;q=, br;q=0.1", ALL, DC_ENC_BR); /* bad q: the gzip entry is ignored */
    nego("gzip;q=abc, br;q=0.1", ALL, DC_ENC_BR);
    nego("gzip;q, br;q=0.1", ALL, DC_ENC_BR);
    nego("gzip;q=0.5;q=0.9, br;q=0.1", ALL, DC_ENC_BR); /* two q parameters */
    nego("gzip br", ALL, DC_ENC_IDENTITY);              /* two tokens, no comma */
    nego("@@@, gzip", ALL, DC_ENC_GZIP);
    nego("gz\"ip, br", ALL, DC_ENC_BR);
    nego("=;=;=,,;", ALL, DC_ENC_IDENTITY);
    nego("gzip;foo=bar", ALL, DC_ENC_GZIP);        /* unknown parameters ignored */
    nego("gzip;;q=0.5;", ALL, DC_ENC_GZIP);        /* empty parameters skipped */
    nego("gzip;q=0.5x, *;q=0.2", GZ, DC_ENC_GZIP); /* garbage gzip entry: "*" covers it */
    assert_int_equal(dc_encoding_negotiate("g\0zip, br", 9, ALL), DC_ENC_BR);
    assert_int_equal(dc_encoding_negotiate("gzip, br", 4, ALL), DC_ENC_GZIP); /* length-bounded */
}

static void test_negotiate_qvalue_grammar(void **state)
{
    nego("gzip;q=1.000", GZ, DC_ENC_GZIP);
    nego("gzip;q=1.", GZ, DC_ENC_GZIP);
    nego("gzip;q=1", GZ, DC_ENC_GZIP);
    nego("gzip;q=0.001", GZ, DC_ENC_GZIP); /* smallest positive weight */
    nego("gzip;q=0.", GZ, DC_ENC_IDENTITY);
    nego("gzip;q=0.000", GZ, DC_ENC_IDENTITY);
    /* not qvalues: the entry is ignored (so here gzip is simply not listed) */
    nego("gzip;q=0.0001", GZ, DC_ENC_IDENTITY);
    nego("gzip;q=0.0001, *", GZ, DC_ENC_GZIP);
    nego("gzip;q=0.0001, *;q=0.5", GZ, DC_ENC_GZIP);
    nego("gzip;q=1.0001, br;q=0.1", ALL, DC_ENC_BR);
    nego("gzip;q=1.001, br;q=0.1", ALL, DC_ENC_BR);
    nego("gzip;q=1.5, br;q=0.1", ALL, DC_ENC_BR);
    nego("gzip;q=2, br;q=0.1", ALL, DC_ENC_BR);
    nego("gzip;q=.5, br;q=0.1", ALL, DC_ENC_BR);
    nego("gzip;q=-0, br;q=0.1", ALL, DC_ENC_BR);
    nego("gzip;q=00.5, br;q=0.1", ALL, DC_ENC_BR);
    nego("gzip;q=0.5e1, br;q=0.1", ALL, DC_ENC_BR);
}

static void test_negotiate_masks(void **state)
{
    nego("gzip, br", 0, DC_ENC_IDENTITY);
    nego("gzip, br", GZ, DC_ENC_GZIP);
    nego("gzip, br", BR, DC_ENC_BR);
    nego("br", GZ, DC_ENC_IDENTITY);
    nego("gzip", BR, DC_ENC_IDENTITY);
    nego("gzip, br", 1u << DC_ENC_IDENTITY, DC_ENC_IDENTITY);
    nego("gzip, br", ~ALL, DC_ENC_IDENTITY); /* bits past DC_ENC_COUNT mean nothing */
    nego("gzip, br", ~0u, DC_ENC_BR);
}

static void test_negotiate_duplicates(void **state)
{
    /* the lowest weight wins, whatever the order */
    nego("gzip, gzip;q=0", GZ, DC_ENC_IDENTITY);
    nego("gzip;q=0, gzip", GZ, DC_ENC_IDENTITY);
    nego("gzip;q=0.9, br;q=0.5, gzip;q=0.1", ALL, DC_ENC_BR);
    nego("gzip;q=0.1, br;q=0.5, gzip;q=0.9", ALL, DC_ENC_BR);
    nego("x-gzip;q=0, gzip", ALL, DC_ENC_IDENTITY);
    nego("*, *;q=0", ALL, DC_ENC_IDENTITY);
}

/* ---- codecs ----------------------------------------------------------------------------------- */

static void test_roundtrip_small_chunks(void **state)
{
    size_t n;
    char *json = jupiter_json(200 * 1024, &n);
    dc_body_t in;
    body_chunked(&in, json, n);
    assert_true(in.nchunks > 4000);
    check_roundtrip(DC_ENC_GZIP, &in, json);
    check_roundtrip(DC_ENC_BR, &in, json);
    dc_body_dispose(&in);
    free(json);
}

static void test_roundtrip_20mb(void **state)
{
    size_t n = 20u * 1024 * 1024;
    char *p = mixed_body(n);
    dc_body_t in;
    body_appended(&in, p, n, 8192);
    for (int e = DC_ENC_GZIP; e <= DC_ENC_BR; e++) {
        dc_body_t out;
        assert_int_equal(dc_encode_body((dc_encoding_t)e, &in, &out), 0);
        assert_true(out.nchunks > 1); /* appended as produced, never one huge buffer */
        assert_true(out.len > n / 4 && out.len < n);
        if (e == DC_ENC_GZIP)
            check_gunzip(&out, p, n);
        else
            check_unbrotli(&out, p, n);
        dc_body_dispose(&out);
    }
    dc_body_dispose(&in);
    free(p);
}

static void test_roundtrip_shapes(void **state)
{
    /* incompressible, one byte, highly repetitive, exactly one scratch buffer of input */
    size_t n = 300 * 1024;
    char *p = malloc(n);
    uint64_t s = 7;
    for (size_t i = 0; i < n; i++)
        p[i] = (char)rng_next(&s);
    static const size_t sizes[] = {1, 65536, 65537, 300 * 1024};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        dc_body_t in;
        body_appended(&in, p, sizes[k], 4096);
        check_roundtrip(DC_ENC_GZIP, &in, p);
        check_roundtrip(DC_ENC_BR, &in, p);
        dc_body_dispose(&in);
    }
    memset(p, 'a', n);
    dc_body_t in;
    body_appended(&in, p, n, n);
    check_roundtrip(DC_ENC_GZIP, &in, p);
    check_roundtrip(DC_ENC_BR, &in, p);
    dc_body_dispose(&in);
    free(p);
}

static void test_encode_empty(void **state)
{
    dc_body_t in, out;
    dc_body_init(&in, 0);
    assert_int_equal(dc_encode_body(DC_ENC_GZIP, &in, &out), 0);
    assert_int_equal(out.len, 20); /* 10-byte header, empty final block, CRC32 + ISIZE */
    check_gunzip(&out, "", 0);
    dc_body_t back;
    assert_int_equal(dc_decode_gzip(&out, &back, 0), 0);
    assert_empty_body(&back);
    dc_body_dispose(&out);
    assert_int_equal(dc_encode_body(DC_ENC_BR, &in, &out), 0);
    assert_true(out.len >= 1 && out.len <= 2);
    check_unbrotli(&out, "", 0);
    dc_body_dispose(&out);
    /* a body made only of empty chunks */
    body_chunked(&in, "", 0);
    assert_int_equal(in.nchunks, 1);
    assert_int_equal(dc_encode_body(DC_ENC_GZIP, &in, &out), 0);
    check_gunzip(&out, "", 0);
    dc_body_dispose(&out);
    dc_body_dispose(&in);
}

static void test_encode_bad_encoding(void **state)
{
    dc_body_t in, out;
    body_appended(&in, "hello", 5, 5);
    assert_int_equal(dc_encode_body(DC_ENC_IDENTITY, &in, &out), DC_EINVAL);
    assert_empty_body(&out);
    assert_int_equal(dc_encode_body(DC_ENC_COUNT, &in, &out), DC_EINVAL);
    assert_empty_body(&out);
    dc_body_dispose(&in);
}

static void test_output_sizing(void **state)
{
    /* a small body's variant is one exactly sized chunk: no 16 KiB chunk for 600 bytes */
    size_t n;
    char *json = jupiter_json(2000, &n);
    dc_body_t in, out;
    body_appended(&in, json, n, n);
    for (int e = DC_ENC_GZIP; e <= DC_ENC_BR; e++) {
        assert_int_equal(dc_encode_body((dc_encoding_t)e, &in, &out), 0);
        assert_int_equal(out.nchunks, 1);
        assert_int_equal(out.chunks[0].cap, out.len);
        assert_true(out.len < n);
        dc_body_dispose(&out);
    }
    dc_body_dispose(&in);
    free(json);
}

static void test_decode_gzip_ok(void **state)
{
    size_t n, zn;
    char *json = jupiter_json(100 * 1024, &n);
    char *z = gzip_ref(json, n, "prices.json", &zn); /* FNAME, FCOMMENT and FHCRC in the header */
    dc_body_t in, out;
    body_chunked(&in, z, zn); /* splits inside the header, the data and the trailer */
    assert_int_equal(dc_decode_gzip(&in, &out, n), 0);
    assert_int_equal(out.len, n);
    char *flat = dc_body_flatten(&out);
    assert_memory_equal(flat, json, n);
    free(flat);
    dc_body_dispose(&out);
    dc_body_dispose(&in);
    /* SIZE_MAX means no limit */
    body_appended(&in, z, zn, 16384);
    assert_int_equal(dc_decode_gzip(&in, &out, SIZE_MAX), 0);
    assert_int_equal(out.len, n);
    dc_body_dispose(&out);
    dc_body_dispose(&in);
    free(z);
    free(json);
}

static void test_decode_gzip_multi_member(void **state)
{
    size_t an, bn;
    char *a = gzip_ref("hello, ", 7, NULL, &an), *b = gzip_ref("world", 5, "w", &bn);
    char *cat = malloc(an + bn);
    memcpy(cat, a, an);
    memcpy(cat + an, b, bn);
    dc_body_t in, out;
    body_chunked(&in, cat, an + bn);
    assert_int_equal(dc_decode_gzip(&in, &out, 100), 0);
    char *flat = dc_body_flatten(&out);
    assert_string_equal(flat, "hello, world");
    free(flat);
    dc_body_dispose(&out);
    assert_int_equal(dc_decode_gzip(&in, &out, 11), DC_ETOOBIG); /* the limit spans members */
    assert_empty_body(&out);
    dc_body_dispose(&in);
    free(a);
    free(b);
    free(cat);
}

static void expect_corrupt(const char *p, size_t n)
{
    dc_body_t in, out;
    body_chunked(&in, p, n);
    int err = dc_decode_gzip(&in, &out, SIZE_MAX);
    if (err != DC_EINVAL)
        print_error("%zu corrupt bytes: got %s\n", n, dc_errname(err));
    assert_int_equal(err, DC_EINVAL);
    assert_empty_body(&out);
    dc_body_dispose(&in);
}

static void test_decode_gzip_corrupt(void **state)
{
    size_t n, zn;
    char *json = jupiter_json(50 * 1024, &n);
    char *z = gzip_ref(json, n, NULL, &zn);
    char *c = malloc(zn + 8);
    expect_corrupt("hello world, not gzip", 21);
    expect_corrupt("\x1f", 1);
    expect_corrupt(z, 10);                       /* header only */
    expect_corrupt(z, zn / 2);                   /* truncated data */
    expect_corrupt(z, zn - 1);                   /* truncated trailer */
    for (size_t at = 0; at < zn; at += zn / 7) { /* flipped bits: header, data, CRC32, ISIZE */
        memcpy(c, z, zn);
        c[at] ^= 0x10;
        expect_corrupt(c, zn);
    }
    memcpy(c, z, zn);
    c[zn - 8] ^= 1; /* CRC32 */
    expect_corrupt(c, zn);
    c[zn - 8] ^= 1;
    c[zn - 1] ^= 1; /* ISIZE */
    expect_corrupt(c, zn);
    c[zn - 1] ^= 1;
    memcpy(c + zn, "\0\0\0\0", 4); /* trailing zeros */
    expect_corrupt(c, zn + 4);
    c[zn] = 'x'; /* trailing garbage */
    expect_corrupt(c, zn + 1);
    /* a zlib stream and a raw deflate stream are not gzip */
    uLongf cap = compressBound(n);
    Bytef *zl = malloc(cap);
    assert_int_equal(compress2(zl, &cap, (const Bytef *)json, n, 6), Z_OK);
    expect_corrupt((const char *)zl, cap);
    expect_corrupt((const char *)zl + 2, cap - 6);
    free(zl);
    free(c);
    free(z);
    free(json);
}

static void test_decode_gzip_max_out(void **state)
{
    size_t n, zn;
    char *json = jupiter_json(300 * 1024, &n);
    char *z = gzip_ref(json, n, NULL, &zn);
    dc_body_t in, out;
    body_appended(&in, z, zn, 1000);
    assert_int_equal(dc_decode_gzip(&in, &out, n), 0); /* exactly the limit is fine */
    assert_int_equal(out.len, n);
    dc_body_dispose(&out);
    assert_int_equal(dc_decode_gzip(&in, &out, n - 1), DC_ETOOBIG);
    assert_empty_body(&out);
    assert_int_equal(dc_decode_gzip(&in, &out, 0), DC_ETOOBIG);
    assert_empty_body(&out);
    dc_body_dispose(&in);
    free(z);
    free(json);
}

/* Regression (found by the fuzzer): output decoded before a corruption must give the same verdict
 * whether or not the corrupt trailer arrived in the same chunk. */
static void test_decode_gzip_verdict_ignores_chunking(void **state)
{
    size_t n = 1094048, zn; /* > 1 MiB */
    char *zeros = calloc(1, n), *z = gzip_ref(zeros, n, NULL, &zn);
    z[zn - 8] ^= 1; /* bad CRC32 */
    for (int limit = 0; limit <= 1; limit++) {
        size_t max_out = limit ? 2 * n : 1 << 20;
        int want = limit ? DC_EINVAL : DC_ETOOBIG;
        for (int shape = 0; shape < 3; shape++) {
            dc_body_t in, out;
            if (shape == 0)
                body_appended(&in, z, zn, zn);
            else if (shape == 1)
                body_appended(&in, z, zn, 1000);
            else
                body_chunked(&in, z, zn);
            assert_int_equal(dc_decode_gzip(&in, &out, max_out), want);
            assert_empty_body(&out);
            dc_body_dispose(&in);
        }
    }
    free(z);
    free(zeros);
}

static void test_decode_gzip_bomb(void **state)
{
    /* 256 MiB of zeros is ~250 KB of gzip; with max_out = 1 MiB the decoder stops at once */
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
    static char zeros[1 << 20];
    dc_body_t bomb, out;
    dc_body_init(&bomb, 0);
    char buf[1 << 16];
    for (int i = 0; i < 256; i++) {
        z.next_in = (Bytef *)zeros;
        z.avail_in = sizeof(zeros);
        int ret;
        do {
            z.next_out = (Bytef *)buf;
            z.avail_out = sizeof(buf);
            ret = deflate(&z, i == 255 ? Z_FINISH : Z_NO_FLUSH);
            dc_body_append(&bomb, buf, sizeof(buf) - z.avail_out);
        } while (z.avail_in > 0 || (i == 255 && ret != Z_STREAM_END));
    }
    deflateEnd(&z);
    assert_true(bomb.len < 512 * 1024);
    double t0 = now_s();
    assert_int_equal(dc_decode_gzip(&bomb, &out, 1 << 20), DC_ETOOBIG);
    double dt = now_s() - t0;
    assert_empty_body(&out);
    assert_true(dt < 1.0);
    dc_body_dispose(&bomb);
}

static void test_decode_gzip_empty(void **state)
{
    dc_body_t in, out;
    dc_body_init(&in, 0);
    assert_int_equal(dc_decode_gzip(&in, &out, 0), 0);
    assert_empty_body(&out);
    body_chunked(&in, "", 0); /* one empty chunk */
    assert_int_equal(dc_decode_gzip(&in, &out, 0), 0);
    assert_empty_body(&out);
    dc_body_dispose(&in);
}

static void test_worth_it(void **state)
{
    assert_true(dc_encoding_worth_it(100, 90));
    assert_false(dc_encoding_worth_it(100, 91));
    assert_true(dc_encoding_worth_it(100, 0));
    assert_true(dc_encoding_worth_it(10, 9));
    assert_false(dc_encoding_worth_it(10, 10));
    assert_true(dc_encoding_worth_it(11, 9)); /* 9 <= 9.9 */
    assert_false(dc_encoding_worth_it(11, 10));
    assert_true(dc_encoding_worth_it(19, 17)); /* 17 <= 17.1 */
    assert_false(dc_encoding_worth_it(19, 18));
    assert_true(dc_encoding_worth_it(1, 0)); /* 0 <= 0.9 */
    assert_false(dc_encoding_worth_it(1, 1));
    assert_false(dc_encoding_worth_it(0, 0)); /* nothing to save */
    assert_false(dc_encoding_worth_it(0, 20));
    assert_false(dc_encoding_worth_it(20, 1000));
    /* no overflow near SIZE_MAX: floor(0.9 * SIZE_MAX) = SIZE_MAX - ceil(SIZE_MAX / 10) */
    size_t lim = SIZE_MAX - (SIZE_MAX / 10 + 1);
    assert_true(dc_encoding_worth_it(SIZE_MAX, lim));
    assert_false(dc_encoding_worth_it(SIZE_MAX, lim + 1));
    assert_false(dc_encoding_worth_it(SIZE_MAX, SIZE_MAX));
}

static void test_bench_jupiter_json(void **state)
{
    size_t n;
    char *json = jupiter_json(10u * 1024 * 1024, &n);
    dc_body_t in;
    body_appended(&in, json, n, 16384);
    for (int e = DC_ENC_GZIP; e <= DC_ENC_BR; e++) {
        dc_body_t out;
        double best = 1e9;
        size_t olen = 0;
        for (int rep = 0; rep < 2; rep++) {
            double t0 = now_s();
            assert_int_equal(dc_encode_body((dc_encoding_t)e, &in, &out), 0);
            double dt = now_s() - t0;
            best = dt < best ? dt : best;
            olen = out.len;
            if (rep == 1) {
                if (e == DC_ENC_GZIP)
                    check_gunzip(&out, json, n);
                else
                    check_unbrotli(&out, json, n);
            }
            dc_body_dispose(&out);
        }
        printf("[ BENCH    ] %-4s %.1f MB Jupiter price JSON -> %.2f MB (%.1f%%): %.1f MB/s\n", enc_names[e], n / MB,
               olen / MB, 100.0 * (double)olen / (double)n, n / MB / best);
        assert_true(dc_encoding_worth_it(n, olen));
    }
    dc_body_dispose(&in);
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_parse_content_encoding),
        cmocka_unit_test(test_parse_content_encoding_rejects),
        cmocka_unit_test(test_compressible_types),
        cmocka_unit_test(test_incompressible_types),
        cmocka_unit_test(test_negotiate_absent_and_empty),
        cmocka_unit_test(test_negotiate_single),
        cmocka_unit_test(test_negotiate_lists),
        cmocka_unit_test(test_negotiate_weights),
        cmocka_unit_test(test_negotiate_star),
        cmocka_unit_test(test_negotiate_identity_refused),
        cmocka_unit_test(test_negotiate_case),
        cmocka_unit_test(test_negotiate_whitespace),
        cmocka_unit_test(test_negotiate_garbage),
        cmocka_unit_test(test_negotiate_qvalue_grammar),
        cmocka_unit_test(test_negotiate_masks),
        cmocka_unit_test(test_negotiate_duplicates),
        cmocka_unit_test(test_roundtrip_small_chunks),
        cmocka_unit_test(test_roundtrip_20mb),
        cmocka_unit_test(test_roundtrip_shapes),
        cmocka_unit_test(test_encode_empty),
        cmocka_unit_test(test_encode_bad_encoding),
        cmocka_unit_test(test_output_sizing),
        cmocka_unit_test(test_decode_gzip_ok),
        cmocka_unit_test(test_decode_gzip_multi_member),
        cmocka_unit_test(test_decode_gzip_corrupt),
        cmocka_unit_test(test_decode_gzip_max_out),
        cmocka_unit_test(test_decode_gzip_verdict_ignores_chunking),
        cmocka_unit_test(test_decode_gzip_bomb),
        cmocka_unit_test(test_decode_gzip_empty),
        cmocka_unit_test(test_worth_it),
        cmocka_unit_test(test_bench_jupiter_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
