/* Listening sockets: created and bound in the main thread (so bind errors stop start-up before any
 * worker runs), one socket per worker per address with SO_REUSEPORT so the kernel balances accepts. */
#ifndef DC_SERVER_LISTENER_H
#define DC_SERVER_LISTENER_H

#include <stdbool.h>

#include "config/config.h"

/* Is the address free? Binds (and closes) a socket without SO_REUSEPORT: with SO_REUSEPORT on our
 * own sockets, a second dexcache (same user, also SO_REUSEPORT) would otherwise bind the same port
 * and silently share its accepts. Anything bound there fails the probe (EADDRINUSE, "already in use"
 * in err); a TIME_WAIT left by a previous run does not. Call once per address before
 * dc_listener_open (a server that takes the address between the two is not detected). */
int dc_listener_probe(const dc_config_listen_t *addr, char *err, size_t errlen);
/* Returns a non-blocking listening fd, or a negative DC_E* code with a message in err. */
int dc_listener_open(const dc_config_listen_t *addr, bool reuseport, char *err, size_t errlen);

#endif
