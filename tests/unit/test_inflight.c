/* Unit tests for inflight/inflight.c, the one table shared by every worker thread: lead / join /
 * finish / cancel, test-and-lead (no waiter), streaming answers, keys that share a hash, and waiters
 * on other threads woken through a post function (msgloop.h stands in for the workers), with cancels
 * racing the leader's finish. Every waiter is released exactly once and gets the answer at most once
 * (never after it cancelled); entry references come back (ASan's leak check runs at exit). */
#include "cmocka_prelude.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cache/growing.h"
#include "cache/store.h"
#include "core/error.h"
#include "inflight/inflight.h"
#include "msgloop.h"

static dc_cache_entry_t *make(const char *key)
{
    dc_body_t b;
    dc_body_init(&b, 5);
    dc_body_append(&b, "hello", 5);
    return dc_cache_entry_create(key, strlen(key), 200, NULL, 0, NULL, 0, dc_shared_body_create(&b));
}

static uint32_t refs(dc_cache_entry_t *e)
{
    return atomic_load(&e->refs);
}

/* ---- one thread: messages are collected instead of crossing threads ---- */

static dc_msg_t *posted[16];
static void *posted_to[16];
static int nposted;
static void collect(void *target, dc_msg_t *m)
{
    posted_to[nposted] = target;
    posted[nposted++] = m;
}
static int results, releases;
static dc_flight_result_t last;
static void on_result(dc_waiter_t *w, dc_flight_result_t *res)
{
    results++;
    last = *res;
    dc_flight_result_release(res);
}
static void on_release(dc_waiter_t *w)
{
    releases++;
}

static void reset_counts(dc_waiter_t *w, int n)
{
    nposted = results = releases = 0;
    memset(&last, 0, sizeof(last));
    memset(w, 0, sizeof(*w) * (size_t)n);
    for (int i = 0; i < n; i++) {
        w[i].on_result = on_result;
        w[i].on_release = on_release;
        w[i].target = &w[i]; /* any token: the post function receives it */
    }
}

static void test_lead_join_finish_cancel(void **state)
{
    dc_waiter_t w[3];
    reset_counts(w, 3);
    dc_inflight_t *t = dc_inflight_create(collect);
    uint64_t h = dc_cache_hash("k", 1);
    dc_flight_t *f = NULL, *f2 = NULL;
    assert_false(dc_inflight_active(t, "k", 1, h));
    assert_int_equal(dc_inflight_join(t, "k", 1, h, &w[0], &f), DC_INFLIGHT_LEADER);
    assert_non_null(f);
    assert_true(dc_inflight_active(t, "k", 1, h));
    assert_int_equal(dc_inflight_count(t), 1);
    assert_int_equal(dc_inflight_join(t, "k", 1, h, &w[1], &f2), DC_INFLIGHT_JOINED);
    assert_int_equal(dc_inflight_join(t, "k", 1, h, &w[2], &f2), DC_INFLIGHT_JOINED);
    assert_int_equal(dc_inflight_join(t, "k", 1, h, NULL, &f2), DC_INFLIGHT_JOINED); /* test-and-lead */
    assert_int_equal(dc_inflight_waiters(t, f), 2);
    assert_int_equal(nposted, 0);
    /* a waiter that gives up before the answer is released at once, never answered */
    assert_true(dc_inflight_cancel(t, &w[2]));
    assert_int_equal(releases, 1);
    assert_int_equal(dc_inflight_waiters(t, f), 1);
    dc_cache_entry_t *e = make("k");
    dc_flight_result_t res = {.outcome = DC_FLIGHT_ENTRY, .entry = e, .fwd_status = 200};
    dc_inflight_finish(t, f, &res);
    assert_int_equal(refs(e), 2); /* the waiter's own reference travels with its message */
    assert_int_equal(nposted, 1);
    assert_ptr_equal(posted_to[0], &w[1]); /* to the waiter's own worker */
    assert_int_equal(dc_inflight_count(t), 0);
    assert_false(dc_inflight_active(t, "k", 1, h));
    /* cancelling after the answer was posted: false, the message releases without delivering */
    assert_false(dc_inflight_cancel(t, &w[1]));
    assert_int_equal(releases, 1);
    posted[0]->run(posted[0]);
    assert_int_equal(results, 0);
    assert_int_equal(releases, 2);
    assert_int_equal(refs(e), 1); /* the undelivered reference was dropped */
    /* the key can be led again; a waiter that stays gets the answer, then is released */
    reset_counts(w, 2);
    assert_int_equal(dc_inflight_join(t, "k", 1, h, &w[0], &f), DC_INFLIGHT_LEADER);
    assert_int_equal(dc_inflight_join(t, "k", 1, h, &w[1], &f2), DC_INFLIGHT_JOINED);
    dc_inflight_finish(t, f, &res);
    posted[0]->run(posted[0]);
    assert_int_equal(results, 1);
    assert_int_equal(releases, 1);
    assert_int_equal(last.outcome, DC_FLIGHT_ENTRY);
    assert_ptr_equal(last.entry, e);
    assert_int_equal(last.fwd_status, 200);
    assert_int_equal(refs(e), 1);
    dc_cache_entry_release(e);
    dc_inflight_destroy(t);
}

static void test_pass_and_error_reach_every_waiter(void **state)
{
    dc_waiter_t w[4];
    reset_counts(w, 4);
    dc_inflight_t *t = dc_inflight_create(collect);
    uint64_t h = dc_cache_hash("p", 1);
    dc_flight_t *f, *f2;
    assert_int_equal(dc_inflight_join(t, "p", 1, h, NULL, &f), DC_INFLIGHT_LEADER); /* a background refresh */
    for (int i = 0; i < 4; i++)
        assert_int_equal(dc_inflight_join(t, "p", 1, h, &w[i], &f2), DC_INFLIGHT_JOINED);
    assert_int_equal(dc_inflight_waiters(t, f), 4);
    dc_flight_result_t err = {.outcome = DC_FLIGHT_ERROR, .status = 504, .message = "upstream timed out"};
    dc_inflight_finish(t, f, &err);
    assert_int_equal(nposted, 4);
    for (int i = 0; i < 4; i++)
        posted[i]->run(posted[i]);
    assert_int_equal(results, 4);
    assert_int_equal(releases, 4);
    assert_int_equal(last.outcome, DC_FLIGHT_ERROR);
    assert_int_equal(last.status, 504);
    assert_string_equal(last.message, "upstream timed out");
    dc_inflight_destroy(t);
}

static void test_keys_sharing_a_hash(void **state)
{
    /* two keys forced onto the same hash are two flights; a prefix of a key is another key */
    dc_waiter_t w[2];
    reset_counts(w, 2);
    dc_inflight_t *t = dc_inflight_create(collect);
    dc_flight_t *fa, *fb, *fc, *fx;
    assert_int_equal(dc_inflight_join(t, "GET /a", 6, 42, NULL, &fa), DC_INFLIGHT_LEADER);
    assert_int_equal(dc_inflight_join(t, "GET /b", 6, 42, NULL, &fb), DC_INFLIGHT_LEADER);
    assert_int_equal(dc_inflight_join(t, "GET /a", 5, 42, NULL, &fc), DC_INFLIGHT_LEADER);
    assert_true(fa != fb && fb != fc && fa != fc);
    assert_int_equal(dc_inflight_count(t), 3);
    assert_int_equal(dc_inflight_join(t, "GET /b", 6, 42, &w[0], &fx), DC_INFLIGHT_JOINED);
    assert_int_equal(dc_inflight_waiters(t, fb), 1);
    assert_int_equal(dc_inflight_waiters(t, fa), 0);
    /* the same key under another hash is not found (the caller's hash is part of the identity) */
    assert_int_equal(dc_inflight_join(t, "GET /a", 6, 43, NULL, &fx), DC_INFLIGHT_LEADER);
    dc_flight_result_t pass = {.outcome = DC_FLIGHT_PASS};
    dc_inflight_finish(t, fx, &pass);
    dc_inflight_finish(t, fa, &pass);
    assert_int_equal(nposted, 0);
    assert_int_equal(dc_inflight_waiters(t, fb), 1); /* untouched by its neighbours */
    dc_inflight_finish(t, fb, &pass);
    dc_inflight_finish(t, fc, &pass);
    assert_int_equal(nposted, 1);
    posted[0]->run(posted[0]);
    assert_int_equal(results, 1);
    assert_int_equal(last.outcome, DC_FLIGHT_PASS);
    assert_int_equal(dc_inflight_count(t), 0);
    dc_inflight_destroy(t);
}

static void test_stream(void **state)
{
    dc_waiter_t w[3];
    reset_counts(w, 3);
    dc_inflight_t *t = dc_inflight_create(collect);
    uint64_t h = dc_cache_hash("s", 1);
    dc_flight_t *f, *f2;
    assert_int_equal(dc_inflight_join(t, "s", 1, h, NULL, &f), DC_INFLIGHT_LEADER);
    assert_int_equal(dc_inflight_join(t, "s", 1, h, &w[0], &f2), DC_INFLIGHT_JOINED);
    dc_cache_entry_t *preview = make("s");
    dc_body_t b;
    dc_body_init(&b, 0);
    dc_shared_body_t *sb = dc_shared_body_create(&b);
    dc_growing_t *g = dc_growing_create(sb, 0);
    dc_shared_body_release(sb);
    dc_flight_result_t res = {.outcome = DC_FLIGHT_STREAM, .entry = preview, .growing = g, .fwd_status = 200};
    dc_inflight_stream(t, f, &res);
    /* the waiter already queued is told now; the flight holds its own references meanwhile */
    assert_int_equal(nposted, 1);
    assert_int_equal(dc_inflight_waiters(t, f), 0);
    assert_int_equal(refs(preview), 3); /* ours, the flight's, the waiter's message */
    /* a request joining while the answer streams follows it at once, and can't be cancelled back */
    assert_int_equal(dc_inflight_join(t, "s", 1, h, &w[1], &f2), DC_INFLIGHT_JOINED);
    assert_int_equal(nposted, 2);
    assert_int_equal(refs(preview), 4);
    assert_false(dc_inflight_cancel(t, &w[1]));
    /* test-and-lead still sees the flight */
    assert_int_equal(dc_inflight_join(t, "s", 1, h, NULL, &f2), DC_INFLIGHT_JOINED);
    assert_int_equal(nposted, 2);
    posted[0]->run(posted[0]);
    posted[1]->run(posted[1]);
    assert_int_equal(results, 1); /* w[1] cancelled */
    assert_int_equal(releases, 2);
    assert_int_equal(last.outcome, DC_FLIGHT_STREAM);
    assert_ptr_equal(last.growing, g);
    assert_int_equal(refs(preview), 2); /* ours and the flight's */
    /* the fill ends: the flight drops its references; waiters that join after finish lead anew */
    dc_growing_end(g, false);
    dc_flight_result_t done = {.outcome = DC_FLIGHT_ENTRY, .entry = preview};
    dc_inflight_finish(t, f, &done);
    assert_int_equal(nposted, 2);
    assert_int_equal(refs(preview), 1);
    assert_int_equal(dc_inflight_join(t, "s", 1, h, &w[2], &f2), DC_INFLIGHT_LEADER);
    dc_inflight_finish(t, f2, &done);
    dc_growing_release(g);
    dc_cache_entry_release(preview);
    dc_inflight_destroy(t);
}

/* ---- threads: waiters on their own loops, cancels racing the leader's finish ---- */

#define NLOOPS 4
#define ROUNDS 300
#define PER_LOOP 4

typedef struct twaiter {
    dc_waiter_t w;
    dc_inflight_t *t;
    const char *key;
    uint64_t hash;
    int cancel_mode;         /* 0 = wait, 1 = cancel right after joining, 2 = cancel from a later message */
    _Atomic int results;     /* on_result calls */
    _Atomic int releases;    /* on_release calls */
    _Atomic int cancel_true; /* cancel returned true */
    _Atomic int led;         /* joined after the finish: led (and finished) a flight itself */
    _Atomic int late;        /* answered after its cancel or its release */
    bool cancel_called;
} twaiter_t;

static _Atomic int outstanding;    /* waiters not yet released */
static _Atomic int joins_started;  /* joins begun this round */
static _Atomic int round_finished; /* the leader of this round finished */

static void t_on_result(dc_waiter_t *w, dc_flight_result_t *res)
{
    twaiter_t *tw = w->data;
    /* on its own loop, before its release, never after a cancel (checked by the main thread: cmocka
     * asserts only work there) */
    if (tw->cancel_called || atomic_load(&tw->releases) != 0)
        atomic_store(&tw->late, 1);
    atomic_fetch_add(&tw->results, 1);
    dc_flight_result_release(res);
}

static void t_on_release(dc_waiter_t *w)
{
    twaiter_t *tw = w->data;
    atomic_fetch_add(&tw->releases, 1);
    atomic_fetch_sub(&outstanding, 1);
}

static void t_cancel(void *arg)
{
    twaiter_t *tw = arg;
    if (atomic_load(&tw->releases) != 0)
        return; /* already answered and released: a caller no longer cancels then */
    tw->cancel_called = true;
    if (dc_inflight_cancel(tw->t, &tw->w))
        atomic_store(&tw->cancel_true, 1);
}

/* Queued right after the join, so ahead of the answer's message: waits (a few ms at most) for the
 * leader's finish, then cancels a waiter whose answer is most likely posted but not yet run. */
static void t_cancel_after_finish(void *arg)
{
    MSGLOOP_WAIT_UNTIL(atomic_load(&round_finished), 5);
    t_cancel(arg);
}

static void t_join(void *arg)
{
    twaiter_t *tw = arg;
    dc_flight_t *f;
    atomic_fetch_add(&joins_started, 1);
    if (dc_inflight_join(tw->t, tw->key, strlen(tw->key), tw->hash, &tw->w, &f) == DC_INFLIGHT_LEADER) {
        /* the leader finished first: this one leads now (the waiter is not used) */
        atomic_store(&tw->led, 1);
        dc_flight_result_t pass = {.outcome = DC_FLIGHT_PASS};
        dc_inflight_finish(tw->t, f, &pass);
        atomic_fetch_sub(&outstanding, 1);
        return;
    }
    if (tw->cancel_mode == 1)
        t_cancel(tw);
    else if (tw->cancel_mode == 2)
        msgloop_run_on(tw->w.target, t_cancel_after_finish, tw);
}

static void test_waiters_on_other_threads(void **state)
{
    msgloop_t loops[NLOOPS];
    for (int i = 0; i < NLOOPS; i++)
        msgloop_start(&loops[i]);
    dc_inflight_t *t = dc_inflight_create(msgloop_post);
    twaiter_t *tws = calloc(ROUNDS * NLOOPS * PER_LOOP, sizeof(*tws));
    dc_cache_entry_t *e = make("shared");
    unsigned seed = 12345;
    for (int r = 0; r < ROUNDS; r++) {
        char key[32];
        snprintf(key, sizeof(key), "GET /k%d", r % 7); /* keys come back once their flight is over */
        char *k = strdup(key);
        uint64_t h = dc_cache_hash(k, strlen(k));
        dc_flight_t *f;
        /* the leader may be a joiner from the previous round that still leads this key: wait for it */
        assert_true(MSGLOOP_WAIT_UNTIL(!dc_inflight_active(t, k, strlen(k), h), 10000));
        assert_int_equal(dc_inflight_join(t, k, strlen(k), h, NULL, &f), DC_INFLIGHT_LEADER);
        for (int i = 0; i < NLOOPS * PER_LOOP; i++) {
            twaiter_t *tw = &tws[r * NLOOPS * PER_LOOP + i];
            tw->t = t;
            tw->key = k;
            tw->hash = h;
            tw->cancel_mode = (int)(rand_r(&seed) % 3);
            tw->w.on_result = t_on_result;
            tw->w.on_release = t_on_release;
            tw->w.target = &loops[i % NLOOPS];
            tw->w.data = tw;
            atomic_fetch_add(&outstanding, 1);
            msgloop_run_on(&loops[i % NLOOPS], t_join, tw);
        }
        /* finish while the joins and cancels run on the other threads: after a random number of them
         * began (some waiters are queued, some cancelled, some come after the finish) */
        int target = (int)(rand_r(&seed) % (NLOOPS * PER_LOOP + 1));
        assert_true(MSGLOOP_WAIT_UNTIL(atomic_load(&joins_started) >= target, 10000));
        dc_flight_result_t res = {.outcome = DC_FLIGHT_ENTRY, .entry = e};
        dc_inflight_finish(t, f, &res);
        atomic_store(&round_finished, 1);
        /* keys are freed with their round; everything for it is over once nothing is outstanding */
        assert_true(MSGLOOP_WAIT_UNTIL(atomic_load(&outstanding) == 0, 20000));
        atomic_store(&joins_started, 0);
        atomic_store(&round_finished, 0);
        free(k);
    }
    for (int i = 0; i < NLOOPS; i++)
        msgloop_stop(&loops[i]);
    int answered = 0, cancelled_early = 0, cancelled_late = 0, led = 0;
    for (int i = 0; i < ROUNDS * NLOOPS * PER_LOOP; i++) {
        twaiter_t *tw = &tws[i];
        if (atomic_load(&tw->led)) {
            led++;
            assert_int_equal(atomic_load(&tw->releases), 0);
            assert_int_equal(atomic_load(&tw->results), 0);
            continue;
        }
        assert_int_equal(atomic_load(&tw->late), 0);
        assert_int_equal(atomic_load(&tw->releases), 1); /* exactly once */
        assert_true(atomic_load(&tw->results) <= 1);     /* at most once */
        if (tw->cancel_called)
            assert_int_equal(atomic_load(&tw->results), 0); /* never after a cancel */
        else
            assert_int_equal(atomic_load(&tw->results), 1); /* and always when it waited */
        answered += atomic_load(&tws[i].results);
        cancelled_early += atomic_load(&tws[i].cancel_true);
        cancelled_late += tw->cancel_called && !atomic_load(&tw->cancel_true);
    }
    print_message("%d waiters: %d answered, %d released by their cancel, %d cancelled once posted, %d led after "
                  "the finish\n",
                  ROUNDS * NLOOPS * PER_LOOP, answered, cancelled_early, cancelled_late, led);
    assert_true(answered > 0);
    assert_int_equal(dc_inflight_count(t), 0);
    assert_int_equal(refs(e), 1); /* every delivered or dropped reference came back */
    dc_cache_entry_release(e);
    free(tws);
    dc_inflight_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lead_join_finish_cancel),  cmocka_unit_test(test_pass_and_error_reach_every_waiter),
        cmocka_unit_test(test_keys_sharing_a_hash),      cmocka_unit_test(test_stream),
        cmocka_unit_test(test_waiters_on_other_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
