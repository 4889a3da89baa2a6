/* API keys of the auth plugin: a set of client keys, each with an id and a tier.
 *
 * Keys are never kept: only their SHA-256 digests, in an open-addressing hash table indexed by the
 * digest's first bytes, so a lookup is one SHA-256 and one or two constant-time digest compares
 * whatever the number of keys, and a memory dump shows no key. Built on the main thread (from config
 * entries and/or a file), then read-only and shared by every worker without locks. Rotation means
 * building a new set (SIGHUP) and swapping it in with a new instance.
 *
 * Functions returning int give 0, or -1 with a message in err (NUL-terminated). */
#ifndef DCA_APIKEYS_H
#define DCA_APIKEYS_H

#include <stddef.h>
#include <stdint.h>

#include "tcache.h"

#define DCA_APIKEY_MAX 512    /* longest accepted key, bytes */
#define DCA_KEY_DIGEST_LEN 32 /* keys are stored and compared as SHA-256 digests */

typedef struct dca_apikey {
    unsigned char digest[DCA_KEY_DIGEST_LEN];
    char id[DCA_ID_MAX + 1];     /* given, or "key-" and 12 hex digits of the digest */
    char tier[DCA_TIER_MAX + 1]; /* "" when none */
} dca_apikey_t;

typedef struct dca_apikeys dca_apikeys_t;

dca_apikeys_t *dca_apikeys_new(void);
void dca_apikeys_free(dca_apikeys_t *s);
size_t dca_apikeys_count(const dca_apikeys_t *s);

/* Adds one key (1..DCA_APIKEY_MAX printable bytes, no space). id and tier may be NULL; an id or a
 * tier is 1..DCA_ID_MAX / DCA_TIER_MAX printable bytes. A key given twice, or an id given to two
 * keys, is refused: a rotation file that says one thing twice is a mistake to report. */
int dca_apikeys_add(dca_apikeys_t *s, const char *key, size_t key_len, const char *id, const char *tier, char *err,
                    size_t errlen);
/* Adds the keys of a file: one key a line as `KEY [ID [TIER]]`, fields separated by spaces or tabs,
 * blank lines and lines starting with '#' skipped. Errors name path:line. */
int dca_apikeys_load_file(dca_apikeys_t *s, const char *path, char *err, size_t errlen);

/* The entry of `key`, or NULL. Safe from several threads at once once loading is over. */
const dca_apikey_t *dca_apikeys_lookup(const dca_apikeys_t *s, const char *key, size_t key_len);

#endif
