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
/* Keeps the address's SO_REUSEPORT group to this process's own sockets: fds are our n listening
 * sockets of the address, opened (bound and listening) one after the other before anything else
 * joined, so they hold the group's indexes 0..n-1. Attaches a classic BPF reuseport program that
 * picks (random % n), so the kernel only ever hands a connection to one of them; a socket of
 * another process (same user, SO_REUSEPORT) that joins later gets index >= n and no connection.
 * 0, or DC_EBIND with a message. Call once per address, after all n are open. */
int dc_listener_pin_group(const dc_config_listen_t *addr, const int *fds, unsigned n, char *err, size_t errlen);

#endif
