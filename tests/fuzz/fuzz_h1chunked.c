/* libFuzzer target for the strict chunked-body decoder that libh2o uses for HTTP/1 request bodies
 * (http/h1chunked.c): never crash or overread, decoded bytes never exceed the input, and feeding
 * the same bytes in two pieces (as they arrive from a socket) gives the same verdict and the same
 * decoded bytes as one piece. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "http/h1chunked.h"

struct phr_chunked_decoder {
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char _hex_count;
    char _state;
};
ssize_t phr_decode_chunked(struct phr_chunked_decoder *decoder, char *buf, size_t *bufsz);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t split = data[0] % (size);
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    char *whole = malloc(len + 1), *parts = malloc(len + 1);
    size_t outlen = 0, rest = 0;
    int v = dc_h1chunked_decode(in, len, whole, &outlen, &rest);
    if (outlen > len || (v == 0 && rest > len))
        abort();
    /* the same bytes in two reads: the second read's buffer starts after what was decoded */
    struct phr_chunked_decoder d = {0};
    d.consume_trailer = 1;
    size_t n1 = split < len ? split : len;
    memcpy(parts, in, n1);
    size_t got1 = n1;
    ssize_t r = phr_decode_chunked(&d, parts, &got1);
    int v2;
    size_t total = got1;
    if (r == -2 && n1 < len) {
        memcpy(parts + got1, in + n1, len - n1);
        size_t got2 = len - n1;
        r = phr_decode_chunked(&d, parts + got1, &got2);
        total += got2;
    }
    v2 = r >= 0 ? 0 : (r == -2 ? 1 : -1);
    if (v2 != v)
        abort();
    if (v == 0 && (total != outlen || memcmp(parts, whole, outlen) != 0))
        abort();
    free(whole);
    free(parts);
    return 0;
}
