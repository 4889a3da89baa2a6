/* libFuzzer target for cache/encode.h. On arbitrary bytes, the header parsers and the gzip decoder
 * must never read out of bounds, crash, leak or hang, and must keep these invariants:
 *  - dc_encoding_negotiate returns an available coding (identity always is) for every mask; the
 *    result ignores case and the order of the list elements; removing codings that were not chosen
 *    from the mask does not change the choice;
 *  - dc_encoding_parse returns -1 or a coding, ignores case, and a coding is only found when the
 *    value is that coding's name (or x-gzip) up to whitespace and commas;
 *  - dc_encoding_compressible_type ignores case and added parameters;
 *  - dc_decode_gzip (1 MiB max_out) returns 0, DC_ETOOBIG or DC_EINVAL, leaves an error's output
 *    empty, and gives the same result whatever the input's chunk boundaries;
 *  - gzip-encoding the input and decoding it gives the input back, and one byte less of max_out is
 *    DC_ETOOBIG; br-encoding it succeeds.
 * (br output is not decoded here: the fuzz build links libbrotlienc only; the unit test decodes.) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/encode.h"
#include "core/error.h"

#define MAX_OUT (1024 * 1024)

static char *exact_copy(const void *data, size_t size)
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

static bool ieq(const char *p, size_t n, const char *lit)
{
    if (strlen(lit) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i] >= 'A' && p[i] <= 'Z' ? (char)(p[i] - 'A' + 'a') : p[i];
        if (c != lit[i])
            return false;
    }
    return true;
}

/* The comma-separated elements of p in reverse order. */
static char *reversed_list(const char *p, size_t n)
{
    char *r = exact_copy(p, n);
    size_t o = 0, end = n;
    for (size_t i = n + 1; i-- > 0;) {
        if (i == 0 || p[i - 1] == ',') {
            memcpy(r + o, p + i, end - i);
            o += end - i;
            if (i > 0)
                r[o++] = ',';
            end = i - 1;
        }
    }
    DC_ASSERT(o == n);
    return r;
}

static void fuzz_negotiate(const char *buf, size_t size)
{
    dc_encoding_t r[4];
    for (unsigned mask = 0; mask < 4; mask++) {
        unsigned bits = ((mask & 1) ? 1u << DC_ENC_GZIP : 0) | ((mask & 2) ? 1u << DC_ENC_BR : 0);
        r[mask] = dc_encoding_negotiate(buf, size, bits);
        DC_ASSERT((unsigned)r[mask] < DC_ENC_COUNT);
        DC_ASSERT(r[mask] == DC_ENC_IDENTITY || (bits & (1u << r[mask])) != 0);
        DC_ASSERT(dc_encoding_negotiate(buf, size, bits | ~3u << 1 | 1u) == r[mask]); /* other bits: ignored */
        for (int upper = 0; upper <= 1; upper++) {
            char *c = exact_copy(buf, size);
            recase(c, size, upper);
            DC_ASSERT(dc_encoding_negotiate(c, size, bits) == r[mask]);
            free(c);
        }
        char *rev = reversed_list(buf, size);
        DC_ASSERT(dc_encoding_negotiate(rev, size, bits) == r[mask]);
        free(rev);
    }
    /* masks: 0 none, 1 gzip, 2 br, 3 both; dropping an unchosen coding keeps the choice */
    DC_ASSERT(r[0] == DC_ENC_IDENTITY);
    if (r[3] == DC_ENC_GZIP)
        DC_ASSERT(r[1] == DC_ENC_GZIP);
    if (r[3] == DC_ENC_BR)
        DC_ASSERT(r[2] == DC_ENC_BR);
    if (r[3] == DC_ENC_IDENTITY)
        DC_ASSERT(r[1] == DC_ENC_IDENTITY && r[2] == DC_ENC_IDENTITY);
    DC_ASSERT(dc_encoding_negotiate(NULL, size, 3u << 1) == DC_ENC_IDENTITY);
}

static void fuzz_parse(const char *buf, size_t size)
{
    int r = dc_encoding_parse(buf, size);
    DC_ASSERT(r >= -1 && r < DC_ENC_COUNT);
    for (int upper = 0; upper <= 1; upper++) {
        char *c = exact_copy(buf, size);
        recase(c, size, upper);
        DC_ASSERT(dc_encoding_parse(c, size) == r);
        free(c);
    }
    if (r >= 0) {
        char *s = exact_copy(buf, size);
        size_t n = 0;
        for (size_t i = 0; i < size; i++)
            if (buf[i] != ' ' && buf[i] != '\t' && buf[i] != ',')
                s[n++] = buf[i];
        DC_ASSERT(ieq(s, n, dc_encoding_name((dc_encoding_t)r)) || (r == DC_ENC_GZIP && ieq(s, n, "x-gzip")));
        free(s);
    }

    bool t = dc_encoding_compressible_type(buf, size);
    static const char param[] = "; charset=utf-8";
    char *c = malloc(size + sizeof(param) - 1);
    memcpy(c, buf, size);
    memcpy(c + size, param, sizeof(param) - 1);
    DC_ASSERT(dc_encoding_compressible_type(c, size + sizeof(param) - 1) == t);
    recase(c, size, true);
    DC_ASSERT(dc_encoding_compressible_type(c, size) == t);
    free(c);
}

/* A body holding data in chunks of exactly `piece` bytes, each its own exact-size allocation. */
static void make_body(dc_body_t *b, const uint8_t *data, size_t size, size_t piece)
{
    dc_body_init(b, 0);
    b->capchunks = size / piece + 1;
    b->chunks = malloc(b->capchunks * sizeof(*b->chunks));
    for (size_t o = 0; o < size; o += piece) {
        size_t take = size - o < piece ? size - o : piece;
        dc_body_chunk_t *c = &b->chunks[b->nchunks++];
        c->data = exact_copy(data + o, take);
        c->len = c->cap = take;
        b->len += take;
    }
}

static bool body_equal(const dc_body_t *a, const dc_body_t *b)
{
    if (a->len != b->len)
        return false;
    char *x = dc_body_flatten(a), *y = dc_body_flatten(b);
    bool eq = memcmp(x, y, a->len) == 0;
    free(x);
    free(y);
    return eq;
}

static void fuzz_decode(const uint8_t *data, size_t size)
{
    dc_body_t one, split, out1, out2;
    make_body(&one, data, size, size ? size : 1);
    make_body(&split, data, size, 1 + size % 13);
    int e1 = dc_decode_gzip(&one, &out1, MAX_OUT), e2 = dc_decode_gzip(&split, &out2, MAX_OUT);
    DC_ASSERT(e1 == 0 || e1 == DC_ETOOBIG || e1 == DC_EINVAL);
    DC_ASSERT(e1 == e2 && body_equal(&out1, &out2));
    DC_ASSERT(e1 == 0 ? out1.len <= MAX_OUT : out1.len == 0 && out1.nchunks == 0);
    dc_body_dispose(&out1);
    dc_body_dispose(&out2);
    dc_body_dispose(&one);

    /* round trip through our own encoder, with the input's chunking */
    dc_body_t gz, back;
    DC_ASSERT(dc_encode_body(DC_ENC_GZIP, &split, &gz) == 0);
    DC_ASSERT(dc_decode_gzip(&gz, &back, size) == 0);
    DC_ASSERT(body_equal(&split, &back));
    dc_body_dispose(&back);
    if (size > 0) {
        DC_ASSERT(dc_decode_gzip(&gz, &back, size - 1) == DC_ETOOBIG);
        DC_ASSERT(back.len == 0 && back.nchunks == 0);
    }
    dc_body_dispose(&gz);
    if (size <= 4096) { /* a brotli encoder with a 4 MiB window is costly: keep the exec rate up */
        DC_ASSERT(dc_encode_body(DC_ENC_BR, &split, &gz) == 0 && gz.len > 0);
        dc_body_dispose(&gz);
    }
    dc_body_dispose(&split);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = exact_copy(data, size);
    fuzz_negotiate(buf, size);
    fuzz_parse(buf, size);
    free(buf);
    fuzz_decode(data, size);
    return 0;
}
