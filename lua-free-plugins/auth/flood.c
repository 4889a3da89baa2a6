/* Failed-auth flood protection: see flood.h. */
#include "flood.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 1024
#define WAYS 4
#define ADDR_MAX 63 /* an IPv6 text address is at most 45 bytes */

typedef struct slot {
    char addr[ADDR_MAX + 1]; /* "" = free */
    uint64_t window_start, last_fail, blocked_until;
    uint32_t failures;
} slot_t;

typedef struct bucket {
    pthread_mutex_t lock;
    slot_t s[WAYS];
} bucket_t;

struct dca_flood {
    uint32_t failures;
    uint64_t window_ms, block_ms;
    bucket_t b[NBUCKETS];
};

dca_flood_t *dca_flood_new(uint32_t failures, uint64_t window_ms, uint64_t block_ms)
{
    dca_flood_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->failures = failures > 0 ? failures : 1;
    f->window_ms = window_ms > 0 ? window_ms : 1;
    f->block_ms = block_ms > 0 ? block_ms : 1;
    for (size_t i = 0; i < NBUCKETS; i++)
        pthread_mutex_init(&f->b[i].lock, NULL);
    return f;
}

void dca_flood_free(dca_flood_t *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < NBUCKETS; i++)
        pthread_mutex_destroy(&f->b[i].lock);
    free(f);
}

static bucket_t *bucket_of(dca_flood_t *f, const char *addr)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
        h = (h ^ *p) * 16777619u;
    return &f->b[h % NBUCKETS];
}

static slot_t *find(bucket_t *b, const char *addr)
{
    for (int i = 0; i < WAYS; i++)
        if (b->s[i].addr[0] != '\0' && strcmp(b->s[i].addr, addr) == 0)
            return &b->s[i];
    return NULL;
}

bool dca_flood_blocked(dca_flood_t *f, const char *addr, uint64_t now, uint64_t *retry_ms)
{
    if (addr == NULL || addr[0] == '\0' || strlen(addr) > ADDR_MAX)
        return false;
    bucket_t *b = bucket_of(f, addr);
    bool blocked = false;
    pthread_mutex_lock(&b->lock);
    slot_t *s = find(b, addr);
    if (s != NULL && s->blocked_until > now) {
        blocked = true;
        *retry_ms = s->blocked_until - now;
    }
    pthread_mutex_unlock(&b->lock);
    return blocked;
}

bool dca_flood_fail(dca_flood_t *f, const char *addr, uint64_t now)
{
    if (addr == NULL || addr[0] == '\0' || strlen(addr) > ADDR_MAX)
        return false;
    bucket_t *b = bucket_of(f, addr);
    bool started = false;
    pthread_mutex_lock(&b->lock);
    slot_t *s = find(b, addr);
    if (s == NULL) { /* a free slot, else the least recently failing one, unblocked ones first */
        for (int i = 0; i < WAYS; i++) {
            slot_t *c = &b->s[i];
            if (c->addr[0] == '\0') {
                s = c;
                break;
            }
            bool cb = c->blocked_until > now, sb = s != NULL && s->blocked_until > now;
            if (s == NULL || (sb && !cb) || (sb == cb && c->last_fail < s->last_fail))
                s = c;
        }
        memset(s, 0, sizeof(*s));
        strcpy(s->addr, addr);
        s->window_start = now;
    }
    if (s->blocked_until <= now) {
        if (now - s->window_start >= f->window_ms) {
            s->window_start = now;
            s->failures = 0;
        }
        s->last_fail = now;
        if (++s->failures >= f->failures) {
            s->blocked_until = now + f->block_ms;
            s->failures = 0;
            s->window_start = s->blocked_until;
            started = true;
        }
    }
    pthread_mutex_unlock(&b->lock);
    return started;
}
