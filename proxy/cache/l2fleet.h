/*
 * The cache's fleet side, on the worker's fleet connection (redis/fleet.h): L2 (entries shared by
 * every instance, values in cache/l2codec.h format under "<prefix>l2:<key>") and cross-instance
 * collapsing (one instance fetches a key while the others wait: a lock "<prefix>lk:<key>", peeks,
 * and fill notices on the channel "<prefix>fill" when a lock is released).
 *
 * Ownership: calls own nothing of the caller's beyond the call (keys and values are copied before
 * returning); values handed to callbacks are valid during the callback only. Watch nodes belong to
 * the caller, who keeps the node and its key alive while watching. The notice subscription and
 * the list of watchers are per-connection state of this module (dc_fleet_ext), freed when the
 * fleet closes (a watch still linked then is detached: its callback never runs, and unwatching it
 * later is a no-op).
 */
#ifndef DC_CACHE_L2FLEET_H
#define DC_CACHE_L2FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/list.h"
#include "redis/fleet.h"

/* L2 get: the callback runs later with err 0 and the value (NULL/0 when absent) or err < 0. A
 * non-zero return means it never runs. set: fire and forget, with an expiry (nothing is sent while
 * Redis is down, for a value over DC_FLEET_L2_MAX, or a ttl of 0). */
#define DC_FLEET_L2_MAX (8 * 1024 * 1024)
typedef void (*dc_fleet_l2_cb)(void *data, int err, const char *value, size_t len);
int dc_fleet_l2_get(dc_fleet_t *f, const char *key, size_t len, dc_fleet_l2_cb cb, void *data);
void dc_fleet_l2_set(dc_fleet_t *f, const char *key, size_t len, const char *value, size_t vlen, uint64_t ttl_ms);
/* L2 values found by get, lock and peek (process-wide, for /metrics). */
uint64_t dc_fleet_l2_hits(void);

/* Cross-instance collapsing. lock: one round trip (a script) that reads the L2 value and takes
 * SET lk:<key> <instance id> NX PX ttl; the callback gets err < 0 (Redis unavailable), or got =
 * true/false and the L2 value (NULL when absent). Reading both at once closes the window in which
 * another instance stores the answer and unlocks between this instance's L2 miss and its lock
 * attempt (it would fetch the key a second time). A caller that uses the value and got the lock
 * unlocks at once. unlock: delete it only if it is still ours, and then announce the key to every
 * instance's followers (see dc_fleet_watch). peek: one round trip returning the L2 value (NULL when
 * absent) and whether the lock exists. */
typedef void (*dc_fleet_lock_cb)(void *data, int err, bool got, const char *l2, size_t l2_len);
int dc_fleet_lock(dc_fleet_t *f, const char *key, size_t len, uint64_t ttl_ms, dc_fleet_lock_cb cb, void *data);
void dc_fleet_unlock(dc_fleet_t *f, const char *key, size_t len);
/* A fleet lock is a short lease, renewed every DC_FLEET_LOCK_RENEW_MS by the fill that holds it
 * (dc_fleet_lock_renew: extended only while it is still ours). Why: a lock nobody will release,
 * from a leader that died, from an unlock lost while Redis was away, or from a lock command that
 * timed out here and that a frozen Redis ran later, holds the other instances' followers back only
 * until the lease runs out, not for a whole fetch deadline. */
#define DC_FLEET_LOCK_LEASE_MS 3000
#define DC_FLEET_LOCK_RENEW_MS 1000
void dc_fleet_lock_renew(dc_fleet_t *f, const char *key, size_t len, uint64_t ttl_ms);
typedef void (*dc_fleet_peek_cb)(void *data, int err, const char *value, size_t vlen, bool locked);
int dc_fleet_peek(dc_fleet_t *f, const char *key, size_t len, dc_fleet_peek_cb cb, void *data);

/* Followers on this worker waiting for another instance's fill: the node is the caller's, and its
 * callback runs once (the node is then unlinked) when any instance unlocks that key (its entry is in
 * L2 by then, or there is none), or when the notice channel was (re)subscribed (notices may have
 * been missed). Notices are a shortcut: followers keep polling with dc_fleet_peek as well. */
typedef struct dc_fleet_watch {
    dc_list_node_t link; /* not linked when not watching */
    const char *key;     /* borrowed while watching */
    size_t len;
    void (*cb)(struct dc_fleet_watch *w);
} dc_fleet_watch_t;
void dc_fleet_watch(dc_fleet_t *f, dc_fleet_watch_t *w);
void dc_fleet_unwatch(dc_fleet_t *f, dc_fleet_watch_t *w); /* no-op when not watching */

/* The lock and peek scripts' reply (pure; exposed for tests and fuzzing): {L2 value or nil, 0/1}.
 * 0 with *value (NULL when L2 has no string there; it points into the reply) and *flag (true only
 * for the integer 1), or DC_EPROTO (*value NULL, *flag false). */
int dc_fleet_reply_l2_and_flag(const redisReply *reply, const char **value, size_t *len, bool *flag);

#endif
