/* Hop-by-hop header rules (RFC 9110 7.6.1), pure. Names are compared case-insensitively. */
#ifndef DC_HTTP_HOP_H
#define DC_HTTP_HOP_H

#include <stdbool.h>
#include <stddef.h>

/* Connection, Keep-Alive, Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, TE, Trailer,
 * Transfer-Encoding, Upgrade. */
bool dc_hop_is_hop_by_hop(const char *name, size_t len);
/* True when `name` is one of the comma-separated tokens of a Connection header value. */
bool dc_hop_listed_in_connection(const char *conn_value, size_t conn_len, const char *name, size_t len);

#endif
