/*
 * C plugins (lua-free-plugins/include/dexcache/plugin.h is their ABI): loading the shared objects,
 * checking their ABI, building their instances from the config, the host function table they
 * call, and the hooks the request path runs (registered with http/plugins.h at start-up).
 *
 * A plugin set = the instances one config names, with one chain per route; it is built on the
 * main thread (start, `dexcache -t`, every reload) and attached to the snapshot made from the same
 * config, which frees it when its last request is done. Loaded files are never unloaded.
 *
 * Threads: dc_plugin_set_build / dc_plugin_describe run on the main thread; the hooks run on the
 * request's worker; a plugin may resume a suspended request from any thread.
 */
#ifndef DC_PLUGIN_PLUGIN_H
#define DC_PLUGIN_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config/config.h"
#include "server/snapshot.h"
#include "server/worker.h"

typedef struct dc_plugin_set dc_plugin_set_t;

/* Start-up registration (server wiring): the request hooks with http, the set's release with the
 * snapshot. Once per process, before the first snapshot. */
void dc_plugin_register(void);

/* Load every file `cfg` names and build its instances (worker states come later, on each worker).
 * 0 with *out (NULL when cfg has no plugins), or DC_ECONFIG / DC_EIO with one line in err naming
 * the file (ABI, load errors) or FILE:LINE:COL of the config (option errors). */
int dc_plugin_set_build(const dc_config_t *cfg, unsigned nworkers, dc_plugin_set_t **out, char *err, size_t errlen);
/* Free a set that was never attached (dexcache -t, a refused reload). */
void dc_plugin_set_free(dc_plugin_set_t *set);
/* Attach `set` (taken over; may be NULL) to a snapshot not yet published. */
void dc_plugin_attach(dc_snapshot_t *snap, dc_plugin_set_t *set);

/* The i-th instance of the snapshot's set: its name, the plugin's name and version, the file.
 * false past the last one. */
bool dc_plugin_info(const dc_snapshot_t *snap, size_t i, const char **name, const char **plugin, const char **version,
                    const char **path);
/* Same for an unattached set (dexcache -v). */
bool dc_plugin_set_info(const dc_plugin_set_t *set, size_t i, const char **name, const char **plugin,
                        const char **version, const char **path);

/* One line per instance of the snapshot's set, "plugin NAME: PLUGIN VERSION (ABI M.m, PATH)\n",
 * into buf (NUL-terminated, cut at len): the crash report's list (core/crash.h). */
void dc_plugin_describe(const dc_snapshot_t *snap, char *buf, size_t len);

/* Worker start (its thread): per-worker states of the current snapshot's instances. */
void dc_plugin_worker_start(dc_worker_t *w);
/* Worker finish (its thread, its inbox about to close): suspended requests of this worker are
 * released; a later resume only runs the plugin's callback with no request. */
void dc_plugin_worker_finish(dc_worker_t *w);

#endif
