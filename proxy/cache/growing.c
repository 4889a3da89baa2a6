#include "cache/growing.h"
#include "core/refcount.h"
#include "core/error.h"
#include "core/list.h"

#include <stdlib.h>

struct dc_growing {
    dc_refcount_t refs;
    pthread_mutex_t lock;
    dc_shared_body_t *body;
    size_t expected;
    bool ended, error;
    bool too_big;   /* the writer gave up because the body outgrew cache.max_object */
    dc_list_t subs; /* through sub->link, newest first */
};

dc_growing_t *dc_growing_create(dc_shared_body_t *body, size_t expected)
{
    dc_growing_t *g = dc_calloc(1, sizeof(*g));
    dc_refcount_init(&g->refs, 1);
    pthread_mutex_init(&g->lock, NULL);
    g->body = dc_shared_body_ref(body);
    g->expected = expected;
    dc_list_init(&g->subs);
    return g;
}

dc_growing_t *dc_growing_ref(dc_growing_t *g)
{
    dc_refcount_take(&g->refs);
    return g;
}

void dc_growing_release(dc_growing_t *g)
{
    if (g == NULL || !dc_refcount_drop(&g->refs))
        return;
    DC_ASSERT(dc_list_empty(&g->subs));
    dc_shared_body_release(g->body);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

dc_shared_body_t *dc_growing_body(dc_growing_t *g)
{
    return g->body;
}

size_t dc_growing_expected(dc_growing_t *g)
{
    return g->expected;
}

/* Lock held. Post one wake-up per subscriber unless one is already queued. */
static void wake_all(dc_growing_t *g)
{
    dc_list_node_t *n;
    dc_list_foreach (n, &g->subs) {
        dc_growing_sub_t *s = dc_container_of(n, dc_growing_sub_t, link);
        if (!atomic_exchange(&s->pending, true))
            s->post(s->target, &s->msg);
    }
}

void dc_growing_append(dc_growing_t *g, const char *p, size_t len)
{
    pthread_mutex_lock(&g->lock);
    dc_body_append(&g->body->body, p, len);
    wake_all(g);
    pthread_mutex_unlock(&g->lock);
}

void dc_growing_end(dc_growing_t *g, bool error)
{
    pthread_mutex_lock(&g->lock);
    g->ended = true;
    g->error = error;
    wake_all(g);
    pthread_mutex_unlock(&g->lock);
}

void dc_growing_mark_too_big(dc_growing_t *g)
{
    pthread_mutex_lock(&g->lock);
    g->too_big = true;
    pthread_mutex_unlock(&g->lock);
}

bool dc_growing_too_big(dc_growing_t *g)
{
    pthread_mutex_lock(&g->lock);
    bool v = g->too_big;
    pthread_mutex_unlock(&g->lock);
    return v;
}

size_t dc_growing_read(dc_growing_t *g, size_t from, const char **bases, size_t *lens, size_t max, size_t *avail,
                       bool *ended, bool *error)
{
    pthread_mutex_lock(&g->lock);
    size_t have = g->body->body.len;
    size_t n = from < have ? dc_body_spans(&g->body->body, from, have - from, bases, lens, max) : 0;
    *avail = have;
    *ended = g->ended;
    *error = g->error;
    pthread_mutex_unlock(&g->lock);
    return n;
}

void dc_growing_subscribe(dc_growing_t *g, dc_growing_sub_t *sub)
{
    pthread_mutex_lock(&g->lock);
    atomic_store(&sub->pending, false);
    sub->cancelled = false;
    sub->link = (dc_list_node_t){0}; /* not subscribed: the caller need not zero it */
    dc_list_push_front(&g->subs, &sub->link);
    /* bytes may already be there: wake once so the subscriber starts sending */
    if (!atomic_exchange(&sub->pending, true))
        sub->post(sub->target, &sub->msg);
    pthread_mutex_unlock(&g->lock);
}

bool dc_growing_unsubscribe(dc_growing_t *g, dc_growing_sub_t *sub)
{
    pthread_mutex_lock(&g->lock);
    if (dc_list_node_linked(&sub->link)) /* unsubscribing twice is harmless */
        dc_list_remove(&sub->link);
    bool queued = atomic_load(&sub->pending);
    if (queued)
        sub->cancelled = true;
    pthread_mutex_unlock(&g->lock);
    return !queued;
}

void dc_growing_woken(dc_growing_sub_t *sub)
{
    /* cleared before reading so an append after the read posts a new wake-up */
    atomic_store(&sub->pending, false);
}
