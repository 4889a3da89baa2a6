/* API keys: see apikeys.h. */
#include "apikeys.h"
#include "fail.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/constant_time.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

struct dca_apikeys {
    dca_apikey_t *e;
    size_t n, cap_e;
    uint32_t *by_digest; /* entry index + 1, 0 = empty; mask + 1 slots, at most half full */
    uint32_t *by_id;
    size_t mask;
};

dca_apikeys_t *dca_apikeys_new(void)
{
    return calloc(1, sizeof(dca_apikeys_t));
}

void dca_apikeys_free(dca_apikeys_t *s)
{
    if (s == NULL)
        return;
    free(s->e);
    free(s->by_digest);
    free(s->by_id);
    free(s);
}

size_t dca_apikeys_count(const dca_apikeys_t *s)
{
    return s->n;
}

static size_t digest_hash(const unsigned char *d)
{
    uint64_t h;
    memcpy(&h, d, sizeof(h));
    return (size_t)h;
}

static size_t id_hash(const char *id)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ull;
    return (size_t)h;
}

static void insert(uint32_t *table, size_t mask, size_t h, uint32_t v)
{
    while (table[h & mask] != 0)
        h++;
    table[h & mask] = v;
}

static int grow(dca_apikeys_t *s)
{
    size_t slots = (s->mask + 1) * 2;
    if (slots < 64)
        slots = 64;
    uint32_t *d = calloc(slots, sizeof(*d)), *i = calloc(slots, sizeof(*i));
    dca_apikey_t *e = realloc(s->e, slots / 2 * sizeof(*e));
    if (d == NULL || i == NULL || e == NULL) {
        free(d);
        free(i);
        if (e != NULL)
            s->e = e;
        return -1;
    }
    s->e = e;
    s->cap_e = slots / 2;
    free(s->by_digest);
    free(s->by_id);
    s->by_digest = d;
    s->by_id = i;
    s->mask = slots - 1;
    for (size_t k = 0; k < s->n; k++) {
        insert(d, s->mask, digest_hash(e[k].digest), (uint32_t)k + 1);
        insert(i, s->mask, id_hash(e[k].id), (uint32_t)k + 1);
    }
    return 0;
}

static int printable(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f)
            return 0;
    return 1;
}

const dca_apikey_t *dca_apikeys_lookup(const dca_apikeys_t *s, const char *key, size_t key_len)
{
    if (s->n == 0 || key_len == 0 || key_len > DCA_APIKEY_MAX)
        return NULL;
    unsigned char d[DCA_KEY_DIGEST_LEN];
    if (mbedtls_sha256_ret((const unsigned char *)key, key_len, d, 0) != 0)
        return NULL;
    for (size_t h = digest_hash(d);; h++) {
        uint32_t v = s->by_digest[h & s->mask];
        if (v == 0)
            return NULL;
        if (mbedtls_ct_memcmp(s->e[v - 1].digest, d, DCA_KEY_DIGEST_LEN) == 0)
            return s->e + v - 1;
    }
}

int dca_apikeys_add(dca_apikeys_t *s, const char *key, size_t key_len, const char *id, const char *tier, char *err,
                    size_t errlen)
{
    if (key_len == 0 || key_len > DCA_APIKEY_MAX || !printable(key, key_len))
        return dca_fail(err, errlen, "an API key is 1 to %d printable bytes without spaces", DCA_APIKEY_MAX);
    if (id != NULL && (id[0] == '\0' || strlen(id) > DCA_ID_MAX || !printable(id, strlen(id))))
        return dca_fail(err, errlen, "a key id is 1 to %d printable bytes without spaces", DCA_ID_MAX);
    if (tier != NULL && (tier[0] == '\0' || strlen(tier) > DCA_TIER_MAX || !printable(tier, strlen(tier))))
        return dca_fail(err, errlen, "a tier is 1 to %d printable bytes without spaces", DCA_TIER_MAX);
    if (s->n >= UINT32_MAX - 1)
        return dca_fail(err, errlen, "too many keys");
    if (s->n + 1 > s->cap_e && grow(s) != 0)
        return dca_fail(err, errlen, "out of memory");
    dca_apikey_t k;
    memset(&k, 0, sizeof(k));
    mbedtls_sha256_ret((const unsigned char *)key, key_len, k.digest, 0);
    if (id != NULL)
        strcpy(k.id, id);
    else
        snprintf(k.id, sizeof(k.id), "key-%02x%02x%02x%02x%02x%02x", k.digest[0], k.digest[1], k.digest[2], k.digest[3],
                 k.digest[4], k.digest[5]);
    if (tier != NULL)
        strcpy(k.tier, tier);
    for (size_t h = digest_hash(k.digest); s->by_digest[h & s->mask] != 0; h++)
        if (memcmp(s->e[s->by_digest[h & s->mask] - 1].digest, k.digest, DCA_KEY_DIGEST_LEN) == 0)
            return dca_fail(err, errlen, "the key of id \"%s\" is given twice", s->e[s->by_digest[h & s->mask] - 1].id);
    for (size_t h = id_hash(k.id); s->by_id[h & s->mask] != 0; h++)
        if (strcmp(s->e[s->by_id[h & s->mask] - 1].id, k.id) == 0)
            return dca_fail(err, errlen, "the id \"%s\" is given to two keys", k.id);
    s->e[s->n] = k;
    s->n++;
    insert(s->by_digest, s->mask, digest_hash(k.digest), (uint32_t)s->n);
    insert(s->by_id, s->mask, id_hash(k.id), (uint32_t)s->n);
    mbedtls_platform_zeroize(&k, sizeof(k));
    return 0;
}

int dca_apikeys_load_file(dca_apikeys_t *s, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return dca_fail(err, errlen, "%s: %s", path, strerror(errno));
    char line[2048], e[256];
    int ret = 0;
    for (unsigned lineno = 1; fgets(line, sizeof(line), f) != NULL; lineno++) {
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n' && !feof(f)) {
            ret = dca_fail(err, errlen, "%s:%u: line too long", path, lineno);
            break;
        }
        char *start = line;
        if (lineno == 1 && memcmp(line, "\xef\xbb\xbf", 3) == 0)
            start += 3; /* a UTF-8 byte order mark (editors on Windows): not part of the first key */
        char *field[4] = {NULL}, *save = NULL;
        int nf = 0;
        for (char *t = strtok_r(start, " \t\r\n", &save); t != NULL; t = strtok_r(NULL, " \t\r\n", &save))
            if (nf < 4)
                field[nf++] = t;
            else
                nf++;
        if (nf == 0 || field[0][0] == '#')
            continue;
        if (nf > 3) {
            ret = dca_fail(err, errlen, "%s:%u: expected KEY [ID [TIER]], found %d fields", path, lineno, nf);
            break;
        }
        if (dca_apikeys_add(s, field[0], strlen(field[0]), field[1], field[2], e, sizeof(e)) != 0) {
            ret = dca_fail(err, errlen, "%s:%u: %s", path, lineno, e);
            break;
        }
    }
    if (ret == 0 && ferror(f))
        ret = dca_fail(err, errlen, "%s: read error", path);
    mbedtls_platform_zeroize(line, sizeof(line));
    fclose(f);
    return ret;
}
