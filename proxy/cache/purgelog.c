#include "cache/purgelog.h"
#include "cache/vary.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

void dc_purgelog_init(dc_purgelog_t *pl)
{
    memset(pl, 0, sizeof(*pl));
    pthread_mutex_init(&pl->lock, NULL);
}

void dc_purgelog_dispose(dc_purgelog_t *pl)
{
    for (size_t i = 0; i < pl->count; i++)
        free(pl->recs[(pl->head + i) % DC_PURGELOG_MAX].arg);
    pl->count = 0;
    pthread_mutex_destroy(&pl->lock);
}

bool dc_purge_matches(dc_purge_kind_t kind, const char *arg, size_t len, const char *key, size_t key_len,
                      const char *const *tags, size_t ntags)
{
    switch (kind) {
    case DC_PURGE_KEY: /* the key itself, a variant stored under it (cache/vary.h), or an entry
                        * derived from it (tagged with the key: a view of a source object) */
        if (key_len >= len && memcmp(key, arg, len) == 0 &&
            (key_len == len || dc_vary_primary_len(key, key_len) == len))
            return true;
        for (size_t i = 0; i < ntags; i++)
            if (strlen(tags[i]) == len && memcmp(tags[i], arg, len) == 0)
                return true;
        return false;
    case DC_PURGE_PREFIX:
        return key_len >= len && memcmp(key, arg, len) == 0;
    case DC_PURGE_TAG:
        for (size_t i = 0; i < ntags; i++)
            if (strlen(tags[i]) == len && memcmp(tags[i], arg, len) == 0)
                return true;
        return false;
    }
    return false;
}

void dc_purgelog_add(dc_purgelog_t *pl, dc_purge_kind_t kind, const char *arg, size_t len, uint64_t at_ms)
{
    pthread_mutex_lock(&pl->lock);
    for (size_t i = 0; i < pl->count; i++) {
        dc_purge_rec_t *r = &pl->recs[(pl->head + i) % DC_PURGELOG_MAX];
        if (r->kind == kind && r->len == len && memcmp(r->arg, arg, len) == 0) {
            if (at_ms > r->at_ms)
                r->at_ms = at_ms;
            pthread_mutex_unlock(&pl->lock);
            return;
        }
    }
    if (pl->count == DC_PURGELOG_MAX) {
        dc_purge_rec_t *old = &pl->recs[pl->head];
        if (old->at_ms > pl->floor_ms)
            pl->floor_ms = old->at_ms;
        free(old->arg);
        pl->head = (pl->head + 1) % DC_PURGELOG_MAX;
        pl->count--;
    }
    dc_purge_rec_t *r = &pl->recs[(pl->head + pl->count) % DC_PURGELOG_MAX];
    r->kind = kind;
    r->arg = dc_strndup(arg, len);
    r->len = len;
    r->at_ms = at_ms;
    pl->count++;
    pthread_mutex_unlock(&pl->lock);
}

bool dc_purgelog_covers(dc_purgelog_t *pl, const char *key, size_t key_len, const char *const *tags, size_t ntags,
                        uint64_t stored_at_ms)
{
    bool covered = false;
    pthread_mutex_lock(&pl->lock);
    if (pl->floor_ms > 0 && stored_at_ms <= pl->floor_ms)
        covered = true;
    for (size_t i = 0; i < pl->count && !covered; i++) {
        const dc_purge_rec_t *r = &pl->recs[(pl->head + i) % DC_PURGELOG_MAX];
        covered = stored_at_ms <= r->at_ms && dc_purge_matches(r->kind, r->arg, r->len, key, key_len, tags, ntags);
    }
    pthread_mutex_unlock(&pl->lock);
    return covered;
}
