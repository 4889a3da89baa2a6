/*
 * The server: owns the listening sockets, the worker threads, the admin listener, the current
 * snapshot and the main thread's loop (signals). Lifecycle:
 *   dc_server_create()  bind everything (errors here stop start-up before any thread runs)
 *   dc_server_run()     start workers, notify systemd READY=1, serve until SIGTERM/SIGINT has
 *                       drained (or the drain timeout forced a stop); returns the exit status
 *   dc_server_destroy()  free what the workers shared (cache, in-flight table, registry of
 *                       event streams, snapshot and config, h2o and TLS configuration)
 * At exit every worker closes what it owns and closes its loop (server/worker.h), and the main
 * thread closes the admin listener, the bus and its own handles and closes its loop: nothing is
 * left for the process's exit to reclaim.
 * SIGHUP reloads the config file: a new snapshot is built and posted to every worker; a file that
 * fails to load is logged and the old snapshot keeps serving.
 */
#ifndef DC_SERVER_SERVER_H
#define DC_SERVER_SERVER_H

#include "config/config.h"

typedef struct dc_server dc_server_t;
struct dc_worker;

/* Takes over the caller's reference to cfg. On failure writes a message into err. */
int dc_server_create(const char *config_path, dc_config_t *cfg, dc_server_t **out, char *err, size_t errlen);
int dc_server_run(dc_server_t *s);
void dc_server_destroy(dc_server_t *s);

/* Worker teardown (server/worker.h), from the worker's thread: it has nothing left that could
 * post to another worker (quiet), then it has closed its loop and is about to return (exited). */
void dc_server_worker_quiet(dc_server_t *s, struct dc_worker *w);
void dc_server_worker_exited(dc_server_t *s, struct dc_worker *w);

#endif
