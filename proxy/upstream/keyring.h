/*
 * API-key rotation for one upstream: round-robin over the configured keys, skipping keys that were
 * answered 401/403 until their quarantine ends. Shared by all worker threads (atomics only, no lock).
 * Pure with respect to time: callers pass "now" (monotonic ms), so the logic is unit-tested.
 * The keyring borrows the key strings from the config snapshot that owns it.
 */
#ifndef DC_UPSTREAM_KEYRING_H
#define DC_UPSTREAM_KEYRING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* A key's public id: safe to log, to put in Redis key names and to send to other instances. */
#define DC_KEYRING_ID_LEN 16

typedef struct dc_keyring {
    size_t nkeys;
    char *const *keys;                   /* borrowed */
    _Atomic uint64_t *quarantined_until; /* per key, monotonic ms; 0 = usable */
    _Atomic uint64_t next;               /* round-robin cursor */
    uint64_t quarantine_ms;
    char (*ids)[DC_KEYRING_ID_LEN + 1]; /* per key: first hex digits of SHA-256(key), never the key */
} dc_keyring_t;

/* Initialise over `keys` (may be 0 keys). Free the inside with dc_keyring_dispose(). */
void dc_keyring_init(dc_keyring_t *kr, char *const *keys, size_t nkeys, uint64_t quarantine_ms);
void dc_keyring_dispose(dc_keyring_t *kr);

/* Index of the key to use now, or -1 when there are no keys. When every key is quarantined the one
 * whose quarantine ends first is returned (sending a possibly bad key beats sending none, which
 * would silently fall to the keyless rate). */
int dc_keyring_pick(dc_keyring_t *kr, uint64_t now_ms);
/* Number of keys usable at `now_ms`. */
size_t dc_keyring_usable(const dc_keyring_t *kr, uint64_t now_ms);
/* Set key `idx` aside until now + quarantine. Returns 1 if it was usable before (first report). */
int dc_keyring_quarantine(dc_keyring_t *kr, int idx, uint64_t now_ms);
/* Set key `idx` aside until `until_ms` (monotonic) unless it already is for longer: a quarantine
 * reported by another instance. Returns 1 if it was usable before. */
int dc_keyring_quarantine_until(dc_keyring_t *kr, int idx, uint64_t now_ms, uint64_t until_ms);
/* Index of the key whose id is `id`, or -1. */
int dc_keyring_find_id(const dc_keyring_t *kr, const char *id, size_t len);
/* Copy quarantine state for keys with equal strings from `old` (used across config reloads). */
void dc_keyring_inherit(dc_keyring_t *kr, const dc_keyring_t *old);

#endif
