#include "inflight/inflight.h"
#include "cache/growing.h"
#include "core/error.h"
#include "core/list.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define NSHARDS 64
#define NBUCKETS 256             /* per shard; flights are few at any moment */
#define FLIGHT_MAGIC 0x464c4754u /* "FLGT" */

enum { W_WAITING = 1, W_POSTED = 2, W_DONE = 3 };

struct dc_flight {
    uint32_t magic;
    uint64_t hash;
    char *key;
    size_t key_len;
    dc_flight_t *next;
    dc_list_t waiters; /* through w->link, newest first */
    size_t nwaiters;
    unsigned shard;
    bool streaming;
    dc_flight_result_t stream; /* valid while streaming: references held by the flight */
};

typedef struct shard {
    pthread_mutex_t lock;
    dc_flight_t *buckets[NBUCKETS];
} shard_t;

struct dc_inflight {
    shard_t shards[NSHARDS];
    dc_inflight_post_fn post;
    _Atomic size_t count;
};

dc_inflight_t *dc_inflight_create(dc_inflight_post_fn post)
{
    dc_inflight_t *t = dc_calloc(1, sizeof(*t));
    for (int i = 0; i < NSHARDS; i++)
        pthread_mutex_init(&t->shards[i].lock, NULL);
    t->post = post;
    return t;
}

void dc_inflight_destroy(dc_inflight_t *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < NSHARDS; i++)
        pthread_mutex_destroy(&t->shards[i].lock);
    free(t);
}

static dc_flight_t **bucket(shard_t *s, uint64_t hash)
{
    return &s->buckets[(hash >> 24) % NBUCKETS];
}

static void run_waiter_msg(dc_msg_t *m);

/* Take / drop one reference to everything a result points to. */
static void result_ref(const dc_flight_result_t *res)
{
    if (res->entry != NULL)
        dc_cache_entry_ref(res->entry);
    if (res->growing != NULL)
        dc_growing_ref(res->growing);
    if (res->growing_gz != NULL)
        dc_growing_ref(res->growing_gz);
}

static void result_release(dc_flight_result_t *res)
{
    dc_cache_entry_release(res->entry);
    dc_growing_release(res->growing);
    dc_growing_release(res->growing_gz);
    res->entry = NULL;
    res->growing = res->growing_gz = NULL;
}

/* Give waiter `w` its own copy of `res` and queue it to its worker. */
static void post_result(dc_inflight_t *t, dc_waiter_t *w, const dc_flight_result_t *res)
{
    DC_ASSERT(!dc_list_node_linked(&w->link));
    w->result = *res;
    result_ref(res);
    w->msg.run = run_waiter_msg;
    w->msg.next = NULL;
    t->post(w->target, &w->msg);
}

/* The flight for key in shard s, or NULL. Called with s->lock held. */
static dc_flight_t *find_flight(shard_t *s, const char *key, size_t len, uint64_t hash)
{
    dc_flight_t *f;
    for (f = *bucket(s, hash); f != NULL; f = f->next)
        if (f->hash == hash && f->key_len == len && memcmp(f->key, key, len) == 0)
            break;
    return f;
}

bool dc_inflight_active(dc_inflight_t *t, const char *key, size_t len, uint64_t hash)
{
    shard_t *s = &t->shards[hash % NSHARDS];
    pthread_mutex_lock(&s->lock);
    bool active = find_flight(s, key, len, hash) != NULL;
    pthread_mutex_unlock(&s->lock);
    return active;
}

/* Queue w on the live flight f of shard si (its lock held): it waits, or, when the answer is
 * already arriving, follows it at once. */
static void enqueue_waiter(dc_inflight_t *t, unsigned si, dc_flight_t *f, dc_waiter_t *w)
{
    w->cancelled = false;
    w->shard = si;
    w->link = (dc_list_node_t){0}; /* in no list (not WAITING): the caller need not zero it */
    if (f->streaming) {
        w->state = W_POSTED;
        w->flight = NULL;
        post_result(t, w, &f->stream);
        return;
    }
    w->state = W_WAITING;
    w->flight = f;
    dc_list_push_front(&f->waiters, &w->link);
    f->nwaiters++;
}

dc_inflight_role_t dc_inflight_join(dc_inflight_t *t, const char *key, size_t len, uint64_t hash, dc_waiter_t *w,
                                    dc_flight_t **flight)
{
    unsigned si = (unsigned)(hash % NSHARDS);
    shard_t *s = &t->shards[si];
    pthread_mutex_lock(&s->lock);
    dc_flight_t *f = find_flight(s, key, len, hash);
    if (f != NULL) {
        if (w != NULL)
            enqueue_waiter(t, si, f, w);
        pthread_mutex_unlock(&s->lock);
        return DC_INFLIGHT_JOINED;
    }
    f = dc_calloc(1, sizeof(*f));
    f->magic = FLIGHT_MAGIC;
    f->hash = hash;
    f->key = dc_strndup(key, len);
    f->key_len = len;
    f->shard = si;
    dc_list_init(&f->waiters);
    f->next = *bucket(s, hash);
    *bucket(s, hash) = f;
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&t->count, 1);
    *flight = f;
    return DC_INFLIGHT_LEADER;
}

void dc_inflight_wait_on(dc_inflight_t *t, dc_flight_t *f, dc_waiter_t *w)
{
    DC_CHECK_MAGIC(f, FLIGHT_MAGIC);
    shard_t *s = &t->shards[f->shard];
    pthread_mutex_lock(&s->lock);
    enqueue_waiter(t, f->shard, f, w);
    pthread_mutex_unlock(&s->lock);
}

size_t dc_inflight_waiters(dc_inflight_t *t, dc_flight_t *f)
{
    shard_t *s = &t->shards[f->shard];
    pthread_mutex_lock(&s->lock);
    size_t n = f->nwaiters;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static void run_waiter_msg(dc_msg_t *m)
{
    dc_waiter_t *w = (dc_waiter_t *)((char *)m - offsetof(dc_waiter_t, msg));
    w->state = W_DONE;
    if (!w->cancelled) {
        w->on_result(w, &w->result); /* takes over entry and growing */
    } else {
        result_release(&w->result);
    }
    w->result.entry = NULL;
    w->result.growing = w->result.growing_gz = NULL;
    w->on_release(w);
}

/* Move f's waiters to `list` (in their order) and mark them POSTED. Called with f's shard lock held. */
static void take_waiters(dc_flight_t *f, dc_list_t *list)
{
    dc_list_init(list);
    dc_list_splice_back(list, &f->waiters);
    dc_list_node_t *n;
    dc_list_foreach (n, list)
        dc_container_of(n, dc_waiter_t, link)->state = W_POSTED;
}

/* Post `res` to every waiter of `list`, front to back (each is unlinked before its post: the
 * message may run, and the waiter be reused, at once on its worker). */
static void post_all(dc_inflight_t *t, dc_list_t *list, const dc_flight_result_t *res)
{
    dc_list_node_t *n;
    while ((n = dc_list_pop_front(list)) != NULL)
        post_result(t, dc_container_of(n, dc_waiter_t, link), res);
}

void dc_inflight_finish(dc_inflight_t *t, dc_flight_t *f, const dc_flight_result_t *res)
{
    DC_CHECK_MAGIC(f, FLIGHT_MAGIC);
    shard_t *s = &t->shards[f->shard];
    pthread_mutex_lock(&s->lock);
    dc_flight_t **pp = bucket(s, f->hash);
    while (*pp != f)
        pp = &(*pp)->next;
    *pp = f->next;
    dc_list_t list;
    take_waiters(f, &list); /* from here on, cancel cannot take them back */
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_sub(&t->count, 1);
    post_all(t, &list, res);
    if (f->streaming)
        result_release(&f->stream);
    free(f->key);
    f->magic = 0;
    free(f);
}

void dc_inflight_stream(dc_inflight_t *t, dc_flight_t *f, const dc_flight_result_t *res)
{
    DC_CHECK_MAGIC(f, FLIGHT_MAGIC);
    shard_t *s = &t->shards[f->shard];
    pthread_mutex_lock(&s->lock);
    DC_ASSERT(!f->streaming);
    f->streaming = true;
    f->stream = *res;
    result_ref(res);
    dc_list_t list;
    take_waiters(f, &list);
    f->nwaiters = 0;
    post_all(t, &list, res);
    pthread_mutex_unlock(&s->lock);
}

bool dc_inflight_cancel(dc_inflight_t *t, dc_waiter_t *w)
{
    /* w->state is only changed under the shard lock (join, finish, here) until the message runs on
     * this same thread, so reading it under the lock is enough; w->flight is valid while WAITING
     * because finish marks every waiter POSTED under this lock before freeing the flight */
    shard_t *s = &t->shards[w->shard];
    bool removed = false;
    pthread_mutex_lock(&s->lock);
    if (w->state == W_WAITING) {
        dc_flight_t *f = w->flight;
        DC_ASSERT(dc_list_node_linked(&w->link));
        dc_list_remove(&w->link);
        f->nwaiters--;
        w->state = W_DONE;
        w->flight = NULL;
        removed = true;
    }
    pthread_mutex_unlock(&s->lock);
    if (removed) {
        w->on_release(w);
        return true;
    }
    /* already posted: the message sees the flag and releases */
    w->cancelled = true;
    return false;
}

size_t dc_inflight_count(dc_inflight_t *t)
{
    return atomic_load(&t->count);
}

void dc_flight_result_release(dc_flight_result_t *res)
{
    dc_cache_entry_release(res->entry);
    res->entry = NULL;
    if (res->growing != NULL)
        dc_growing_release(res->growing);
    if (res->growing_gz != NULL)
        dc_growing_release(res->growing_gz);
    res->growing = res->growing_gz = NULL;
}
