/*
 * The one intrusive doubly-linked list (style.md habit 16, after h2o's linklist.h): a circular list
 * through a sentinel, so push and remove never branch on an end. An object that sits in a list
 * embeds a dc_list_node_t and is found back from it with dc_container_of(); the list owns nothing
 * (who frees an object that is still linked is the owner's business, and a bug).
 *
 * A list must be dc_list_init()ed before use (a zeroed dc_list_t is not an empty list: the first push
 * aborts). A zeroed node is "not linked"; dc_list_remove() makes it so again, so
 * dc_list_node_linked() tells whether an object is in a list. A node is in at most one list at a time.
 * Not thread-safe: the owner of the list serialises access.
 */
#ifndef DC_CORE_LIST_H
#define DC_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

typedef struct dc_list_node {
    struct dc_list_node *_prev, *_next; /* NULL both when not linked */
} dc_list_node_t;

typedef struct dc_list {
    dc_list_node_t _head; /* sentinel: _head._next is the first node, _head._prev the last */
} dc_list_t;

/* The object of type `type` whose member `member` is at `ptr`. */
#define dc_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline void dc_list_init(dc_list_t *l)
{
    l->_head._prev = l->_head._next = &l->_head;
}

static inline bool dc_list_empty(const dc_list_t *l)
{
    DC_ASSERT(l->_head._next != NULL); /* initialised */
    return l->_head._next == &l->_head;
}

static inline bool dc_list_node_linked(const dc_list_node_t *n)
{
    return n->_next != NULL;
}

/* Link `n` (not linked) after `at` (a node of a list or its sentinel). */
static inline void dc__list_insert_after(dc_list_node_t *at, dc_list_node_t *n)
{
    DC_ASSERT(at != NULL && at->_next != NULL && n->_next == NULL); /* an initialised list, a free node */
    n->_prev = at;
    n->_next = at->_next;
    at->_next->_prev = n;
    at->_next = n;
}

static inline void dc_list_push_back(dc_list_t *l, dc_list_node_t *n)
{
    dc__list_insert_after(l->_head._prev, n);
}

static inline void dc_list_push_front(dc_list_t *l, dc_list_node_t *n)
{
    dc__list_insert_after(&l->_head, n);
}

/* Unlink `n` from whatever list it is in (it must be linked). */
static inline void dc_list_remove(dc_list_node_t *n)
{
    DC_ASSERT(n->_next != NULL);
    n->_prev->_next = n->_next;
    n->_next->_prev = n->_prev;
    n->_prev = n->_next = NULL;
}

/* The first / last node, or NULL when the list is empty. */
static inline dc_list_node_t *dc_list_first(const dc_list_t *l)
{
    return dc_list_empty(l) ? NULL : l->_head._next;
}

static inline dc_list_node_t *dc_list_last(const dc_list_t *l)
{
    return dc_list_empty(l) ? NULL : l->_head._prev;
}

/* The node after `n` in `l`, or NULL at the end. */
static inline dc_list_node_t *dc_list_next(const dc_list_t *l, const dc_list_node_t *n)
{
    return n->_next == &l->_head ? NULL : n->_next;
}

/* Unlink and return the first node, or NULL when the list is empty. */
static inline dc_list_node_t *dc_list_pop_front(dc_list_t *l)
{
    dc_list_node_t *n = dc_list_first(l);
    if (n != NULL)
        dc_list_remove(n);
    return n;
}

/* Move every node of `src` to the end of `dst`, in order; `src` is left empty. */
static inline void dc_list_splice_back(dc_list_t *dst, dc_list_t *src)
{
    if (dc_list_empty(src))
        return;
    DC_ASSERT(dst->_head._next != NULL);
    dc_list_node_t *first = src->_head._next, *last = src->_head._prev;
    first->_prev = dst->_head._prev;
    dst->_head._prev->_next = first;
    last->_next = &dst->_head;
    dst->_head._prev = last;
    dc_list_init(src);
}

/* Walk `l` front to back with `node` (a dc_list_node_t *); the body must not unlink anything. */
#define dc_list_foreach(node, l) for ((node) = (l)->_head._next; (node) != &(l)->_head; (node) = (node)->_next)

/* Walk `l` front to back with `node` (a dc_list_node_t *), `tmp` holding the next one: the body may
 * remove `node` (only `node`: removing `tmp` from the body is a bug; for that keep a cursor that the
 * removal path advances, as sse/ does). */
#define dc_list_foreach_safe(node, tmp, l)                                                                             \
    for ((node) = (l)->_head._next, (tmp) = (node)->_next; (node) != &(l)->_head; (node) = (tmp), (tmp) = (node)->_next)

#endif
