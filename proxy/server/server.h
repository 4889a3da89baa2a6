/*
 * The server: owns the listening sockets, the worker threads, the admin listener, the current
 * snapshot and the main thread's loop (signals). Lifecycle:
 *   dc_server_create()  bind everything (errors here stop start-up before any thread runs)
 *   dc_server_run()     start workers, notify systemd READY=1, serve until SIGTERM/SIGINT has
 *                       drained (or the drain timeout forced a stop); returns the exit status
 *   dc_server_destroy()
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

/* Called by a worker thread just before it exits. */
void dc_server_worker_exited(dc_server_t *s, struct dc_worker *w);

#endif
