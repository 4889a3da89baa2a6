/*
 * Who is the client? (pure) The peer address, unless the peer is a trusted proxy (CIDRs from
 * server.trusted_proxies): then CF-Connecting-IP when present, else X-Forwarded-For walked from the
 * right, skipping trusted addresses, taking the first untrusted one (nginx realip with
 * real_ip_recursive). A client that is not a trusted proxy can't choose its identity by sending
 * these headers.
 */
#ifndef DC_RATELIMIT_CLIENTID_H
#define DC_RATELIMIT_CLIENTID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dc_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
} dc_cidr_t;

/* "10.0.0.0/8", "::1", "2001:db8::/32"; a bare address is /32 or /128. Returns 0 or DC_EINVAL. */
int dc_cidr_parse(const char *s, dc_cidr_t *out);
/* Is textual address `ip` (no port) inside any of the CIDRs? */
bool dc_cidr_match_any(const dc_cidr_t *list, size_t n, const char *ip, size_t len);

/* Write the client's address into out (NUL-terminated, cap >= 46) and return its length. */
size_t dc_client_id(const char *peer, const char *xff, size_t xff_len, const char *cf, size_t cf_len,
                    const dc_cidr_t *trusted, size_t ntrusted, char *out, size_t cap);

#endif
