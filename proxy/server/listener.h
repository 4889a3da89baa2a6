/* Listening sockets: created and bound in the main thread (so bind errors stop start-up before any
 * worker runs), one socket per worker per address with SO_REUSEPORT so the kernel balances accepts. */
#ifndef DC_SERVER_LISTENER_H
#define DC_SERVER_LISTENER_H

#include <stdbool.h>

#include "config/config.h"

/* Returns a non-blocking listening fd, or a negative DC_E* code with a message in err. */
int dc_listener_open(const dc_config_listen_t *addr, bool reuseport, char *err, size_t errlen);

#endif
