/*
 * A body that one thread (a fill) is still appending to while readers on other worker threads
 * send what has arrived so far. Wraps the fill's identity dc_shared_body_t: appends and reads of
 * the chunk list take the growing's mutex (chunks themselves never move, so readers send straight
 * from them without holding it). Readers subscribe to be woken, through a message to their own
 * worker, when bytes arrive or the body ends; wake-ups are coalesced (one pending message per
 * subscriber at a time).
 *
 * Subscriber lifecycle (a subscriber lives on its own worker thread):
 *   dc_growing_subscribe()   -> woken by msg.run on its worker after appends / the end
 *   dc_growing_unsubscribe() -> returns true when no wake-up is pending (nothing more will run);
 *                               false when one is queued: it will run with `cancelled` set.
 */
#ifndef DC_CACHE_GROWING_H
#define DC_CACHE_GROWING_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "cache/store.h"
#include "core/list.h"
#include "core/mailbox.h"

typedef struct dc_growing dc_growing_t;

typedef struct dc_growing_sub {
    dc_msg_t msg; /* run on the subscriber's worker */
    void *target; /* the subscriber's worker */
    void (*post)(void *target, dc_msg_t *msg);
    atomic_bool pending;
    bool cancelled;      /* set by unsubscribe while a wake-up was queued */
    dc_list_node_t link; /* in the growing body's subscribers (set by subscribe) */
} dc_growing_sub_t;

/* Wrap `body` (a reference is taken); `expected` = final length when known, else 0. */
dc_growing_t *dc_growing_create(dc_shared_body_t *body, size_t expected);
dc_growing_t *dc_growing_ref(dc_growing_t *g);
void dc_growing_release(dc_growing_t *g);
dc_shared_body_t *dc_growing_body(dc_growing_t *g);
size_t dc_growing_expected(dc_growing_t *g);

/* Writer side (the fill's thread). */
void dc_growing_append(dc_growing_t *g, const char *p, size_t len);
void dc_growing_end(dc_growing_t *g, bool error);
/* Before the end (with an error): the writer gives up because the body outgrew cache.max_object.
 * Readers tell this failure, which the next fetch would meet again, from a broken transfer. */
void dc_growing_mark_too_big(dc_growing_t *g);
bool dc_growing_too_big(dc_growing_t *g);

/* Reader side (any thread): spans of bytes [from, from + n) that have arrived, up to `max` spans;
 * *avail = bytes arrived so far, *ended / *error describe the end. Returns the number of spans. */
size_t dc_growing_read(dc_growing_t *g, size_t from, const char **bases, size_t *lens, size_t max, size_t *avail,
                       bool *ended, bool *error);

void dc_growing_subscribe(dc_growing_t *g, dc_growing_sub_t *sub);
bool dc_growing_unsubscribe(dc_growing_t *g, dc_growing_sub_t *sub);
/* Call at the start of the wake-up handler, before reading. */
void dc_growing_woken(dc_growing_sub_t *sub);

#endif
