/*
 * Internal to config/: scalar value syntax shared by the YAML tree, the directive engine and the
 * reference generator. The public parsers (durations, sizes, rates, listen addresses) are declared
 * in config.h and implemented in values.c too.
 *
 * Every function here is pure apart from dc__config_expand_env (reads the environment) and
 * dc__config_online_cpus (asks the OS).
 */
#ifndef DC_CONFIG_VALUES_H
#define DC_CONFIG_VALUES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Expand ${NAME} and ${NAME:-default} from the environment; "$${" stands for a literal "${".
 * As in the shell, ":-" also applies when NAME is set but empty; an unset NAME without a default
 * becomes "". NAME is [A-Za-z_][A-Za-z0-9_]*; the default runs up to the first '}'.
 * Returns 0 with *out a heap string (caller frees), or DC_EINVAL with *bad_off at the offending
 * "${" (nothing allocated).
 * on_unset (may be NULL) is called for each unset NAME written without a default, with the offset
 * of its "${" in s (it may be called before a later DC_EINVAL).
 */
typedef void (*dc__config_unset_cb)(void *ctx, const char *name, size_t off);
int dc__config_expand_env(const char *s, char **out, size_t *bad_off, dc__config_unset_cb on_unset, void *ctx);

/* true/false/yes/no/on/off, any case. Returns 0 or DC_EINVAL. */
int dc__config_parse_bool(const char *s, bool *out);

/* Decimal integer without sign or spaces, at most `max`. Returns 0, DC_EINVAL or DC_ERANGE. */
int dc__config_parse_uint(const char *s, uint64_t max, uint64_t *out);

/* "10.0.0.0/8", "::1/128" or a bare address (written back with /32 or /128 appended).
 * Returns 0 with *normalized a heap string, or DC_EINVAL. */
int dc__config_parse_cidr(const char *s, char **normalized);

/* An HTTP header field name (RFC 9110 token). */
bool dc__config_is_header_name(const char *s);
/* Names a route may not add to forward_headers / key_headers (lowercased input): hop-by-hop and
 * framing headers, Host, the ones dexcache sets itself (Via, X-Request-Id, Forwarded,
 * X-Forwarded-*, and the client-address headers it refuses from clients: see http/hop.h
 * dc_hop_is_spoofable), and the conditional/range/encoding headers a cache fill decides. */
bool dc__config_is_reserved_forward_header(const char *s);

/* Shortest exact rendering: 90000 -> "90s", 3600000 -> "1h", 1500 -> "1500ms", 0 -> "0". */
void dc__config_format_duration(uint64_t ms, char *buf, size_t len);
/* 268435456 -> "256MiB", 10000 -> "10000" (bytes when no binary unit divides it). */
void dc__config_format_size(uint64_t bytes, char *buf, size_t len);

/* Online CPUs, clamped to 1..max. */
uint32_t dc__config_online_cpus(uint32_t max);

#endif
