/*
 * The strict chunked-body decoder that replaces libh2o's for every HTTP/1 request body (see
 * h1chunked.c for why and how: it is installed by being linked into the executable).
 */
#ifndef DC_HTTP_H1CHUNKED_H
#define DC_HTTP_H1CHUNKED_H

#include <stddef.h>

/* Call once from the server (it only makes sure the linker keeps the decoder). */
void dc_h1chunked_install(void);

/* Decode a whole chunked body `in` (len bytes) into `out` (at least len bytes): 0 when it is
 * complete (*outlen decoded bytes, *rest bytes after its end), 1 when more bytes are needed,
 * -1 when it breaks the rules. Pure; for tests and fuzzing. */
int dc_h1chunked_decode(const char *in, size_t len, char *out, size_t *outlen, size_t *rest);

#endif
