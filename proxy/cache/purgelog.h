/*
 * The purges this process has applied recently, so that a copy stored before a purge and found
 * later somewhere the purge could not reach (an L2 entry in Redis, written by any instance) is
 * refused instead of being served again. A purge is (kind, argument, at_ms): it covers the
 * entries matching it that were stored at or before at_ms (wall clock), which makes applying the
 * same purge twice, or late, harmless.
 *
 * Bounded: at most DC_PURGELOG_MAX purges are remembered. When an old one has to go, its time
 * becomes a floor: every copy stored at or before the floor counts as purged (too cautious, never
 * wrong). Thread-safe (one mutex); owned by the cache store.
 */
#ifndef DC_CACHE_PURGELOG_H
#define DC_CACHE_PURGELOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DC_PURGELOG_MAX 1024

typedef enum {
    DC_PURGE_KEY = 'k',    /* one exact cache key (and the Vary variants stored under it) */
    DC_PURGE_PREFIX = 'p', /* every key starting with the argument */
    DC_PURGE_TAG = 't',    /* every entry carrying the tag */
} dc_purge_kind_t;

typedef struct dc_purge_rec {
    dc_purge_kind_t kind;
    char *arg;
    size_t len;
    uint64_t at_ms;
} dc_purge_rec_t;

typedef struct dc_purgelog {
    pthread_mutex_t lock;
    dc_purge_rec_t recs[DC_PURGELOG_MAX]; /* ring */
    size_t head, count;
    uint64_t floor_ms;
} dc_purgelog_t;

void dc_purgelog_init(dc_purgelog_t *pl);
void dc_purgelog_dispose(dc_purgelog_t *pl);
/* Remember a purge (the argument is copied). An identical record is kept once (latest at_ms). */
void dc_purgelog_add(dc_purgelog_t *pl, dc_purge_kind_t kind, const char *arg, size_t len, uint64_t at_ms);
/* Does a remembered purge cover a copy of `key` with these tags stored at `stored_at_ms`? */
bool dc_purgelog_covers(dc_purgelog_t *pl, const char *key, size_t key_len, const char *const *tags, size_t ntags,
                        uint64_t stored_at_ms);
/* Does (kind, arg) match this key and tags? (pure) */
bool dc_purge_matches(dc_purge_kind_t kind, const char *arg, size_t len, const char *key, size_t key_len,
                      const char *const *tags, size_t ntags);

#endif
