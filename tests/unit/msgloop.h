/* A stand-in for a worker thread in unit tests: a thread that runs the dc_msg_t posted to it, in
 * order, one at a time (what the server's h2o_multithread receiver does for a worker). Tests post
 * their own messages to run code "on that worker" (msgloop_run_on). Header-only, static. */
#ifndef DC_TEST_MSGLOOP_H
#define DC_TEST_MSGLOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "core/mailbox.h"

typedef struct msgloop {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dc_msg_t *head, **tail;
    bool stop;
    unsigned long ran; /* messages run so far */
} msgloop_t;

static void *msgloop_main(void *arg)
{
    msgloop_t *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (l->head == NULL && !l->stop)
            pthread_cond_wait(&l->cv, &l->mu);
        if (l->head == NULL)
            break;
        dc_msg_t *m = l->head;
        l->head = m->next;
        if (l->head == NULL)
            l->tail = &l->head;
        pthread_mutex_unlock(&l->mu);
        m->run(m);
        pthread_mutex_lock(&l->mu);
        l->ran++;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void msgloop_start(msgloop_t *l)
{
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->head = NULL;
    l->tail = &l->head;
    l->stop = false;
    l->ran = 0;
    pthread_create(&l->th, NULL, msgloop_main, l);
}

/* The post function modules are given (dc_inflight_post_fn, dc_growing_sub_t.post). */
static void msgloop_post(void *target, dc_msg_t *m)
{
    msgloop_t *l = target;
    m->next = NULL;
    pthread_mutex_lock(&l->mu);
    *l->tail = m;
    l->tail = &m->next;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* Runs what is queued, then stops the thread. */
static void msgloop_stop(msgloop_t *l)
{
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->th, NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
}

/* Polls `cond` every millisecond for at most `ms` milliseconds; evaluates to whether it held. */
#define MSGLOOP_WAIT_UNTIL(cond, ms)                                                                                   \
    ({                                                                                                                 \
        bool ok_ = false;                                                                                              \
        for (unsigned i_ = 0; i_ <= (ms); i_++) {                                                                      \
            if (cond) {                                                                                                \
                ok_ = true;                                                                                            \
                break;                                                                                                 \
            }                                                                                                          \
            struct timespec d_ = {0, 1000000};                                                                         \
            nanosleep(&d_, NULL);                                                                                      \
        }                                                                                                              \
        ok_;                                                                                                           \
    })

/* A message that runs fn(arg) on the loop's thread; freed after it ran. */
typedef struct msgloop_task {
    dc_msg_t msg;
    void (*fn)(void *arg);
    void *arg;
} msgloop_task_t;

static void msgloop_task_run(dc_msg_t *m)
{
    msgloop_task_t *t = (msgloop_task_t *)m;
    t->fn(t->arg);
    free(t);
}

static void msgloop_run_on(msgloop_t *l, void (*fn)(void *), void *arg)
{
    msgloop_task_t *t = calloc(1, sizeof(*t));
    t->msg.run = msgloop_task_run;
    t->fn = fn;
    t->arg = arg;
    msgloop_post(l, &t->msg);
}

#endif
