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

typedef struct dc_keyring {
    size_t nkeys;
    char *const *keys;                  /* borrowed */
    _Atomic uint64_t *quarantined_until; /* per key, monotonic ms; 0 = usable */
    _Atomic uint64_t next;              /* round-robin cursor */
    uint64_t quarantine_ms;
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
/* Copy quarantine state for keys with equal strings from `old` (used across config reloads). */
void dc_keyring_inherit(dc_keyring_t *kr, const dc_keyring_t *old);

#endif
