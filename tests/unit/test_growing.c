/* Unit tests for cache/growing.c: a body one thread appends to while readers on other threads send
 * what has arrived. Wake-ups are posted per subscriber and coalesced; unsubscribe tells whether a
 * wake-up is still queued; readers see every byte in order and the end (clean or error); references
 * are released (ASan's leak check runs at exit). The last test runs a writer against reader threads. */
#include "cmocka_prelude.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cache/growing.h"
#include "msgloop.h"

/* ---- single thread: posts are collected instead of crossing threads ---- */

typedef struct collector {
    int posts;
    dc_msg_t *last;
} collector_t;

static void collect(void *target, dc_msg_t *m)
{
    collector_t *c = target;
    c->posts++;
    c->last = m;
}

static void never_run(dc_msg_t *m)
{
    fail_msg("a collected message ran");
}

static dc_growing_t *new_growing(size_t expected)
{
    dc_body_t b;
    dc_body_init(&b, expected);
    dc_shared_body_t *sb = dc_shared_body_create(&b);
    dc_growing_t *g = dc_growing_create(sb, expected);
    dc_shared_body_release(sb); /* the growing holds its own reference */
    return g;
}

static void sub_init(dc_growing_sub_t *s, collector_t *c)
{
    memset(s, 0, sizeof(*s));
    s->msg.run = never_run;
    s->target = c;
    s->post = collect;
}

/* All bytes in [from, avail) as one string (the spans, concatenated). */
static size_t read_all(dc_growing_t *g, size_t from, char *out, size_t *avail, bool *ended, bool *error)
{
    const char *bases[64];
    size_t lens[64];
    size_t n = dc_growing_read(g, from, bases, lens, 64, avail, ended, error);
    size_t got = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + got, bases[i], lens[i]);
        got += lens[i];
    }
    return got;
}

static void test_read_what_arrived(void **state)
{
    dc_growing_t *g = new_growing(0);
    assert_int_equal(dc_growing_expected(g), 0);
    char out[64];
    size_t avail;
    bool ended, error;
    assert_int_equal(read_all(g, 0, out, &avail, &ended, &error), 0);
    assert_int_equal(avail, 0);
    assert_false(ended);
    dc_growing_append(g, "abc", 3);
    dc_growing_append(g, "defg", 4);
    assert_int_equal(read_all(g, 0, out, &avail, &ended, &error), 7);
    assert_memory_equal(out, "abcdefg", 7);
    assert_int_equal(avail, 7);
    assert_int_equal(read_all(g, 5, out, &avail, &ended, &error), 2);
    assert_memory_equal(out, "fg", 2);
    assert_int_equal(read_all(g, 7, out, &avail, &ended, &error), 0); /* nothing new */
    assert_int_equal(read_all(g, 9, out, &avail, &ended, &error), 0); /* past the end: nothing, no crash */
    assert_false(ended);
    assert_int_equal(dc_growing_body(g)->body.len, 7);
    dc_growing_end(g, false);
    assert_int_equal(read_all(g, 7, out, &avail, &ended, &error), 0);
    assert_true(ended);
    assert_false(error);
    dc_growing_release(g);

    g = new_growing(100);
    assert_int_equal(dc_growing_expected(g), 100);
    dc_growing_append(g, "x", 1);
    dc_growing_end(g, true);
    assert_int_equal(read_all(g, 0, out, &avail, &ended, &error), 1);
    assert_true(ended);
    assert_true(error);
    dc_growing_release(g);
}

static void test_wakeups_are_coalesced(void **state)
{
    dc_growing_t *g = new_growing(0);
    collector_t c = {0};
    dc_growing_sub_t s;
    sub_init(&s, &c);
    /* subscribing wakes once at once: bytes may already be there */
    dc_growing_subscribe(g, &s);
    assert_int_equal(c.posts, 1);
    assert_ptr_equal(c.last, &s.msg);
    /* while that wake-up is queued, appends and the end post nothing more */
    dc_growing_append(g, "a", 1);
    dc_growing_append(g, "b", 1);
    assert_int_equal(c.posts, 1);
    /* the handler ran: the next append posts again, once */
    dc_growing_woken(&s);
    dc_growing_append(g, "c", 1);
    dc_growing_append(g, "d", 1);
    assert_int_equal(c.posts, 2);
    dc_growing_woken(&s);
    dc_growing_end(g, false);
    assert_int_equal(c.posts, 3);
    /* unsubscribe with a wake-up queued: false, and the message will run with `cancelled` set */
    assert_false(dc_growing_unsubscribe(g, &s));
    assert_true(s.cancelled);
    dc_growing_release(g);
}

static void test_unsubscribe(void **state)
{
    dc_growing_t *g = new_growing(0);
    collector_t c1 = {0}, c2 = {0};
    dc_growing_sub_t s1, s2;
    sub_init(&s1, &c1);
    sub_init(&s2, &c2);
    dc_growing_subscribe(g, &s1);
    dc_growing_subscribe(g, &s2);
    dc_growing_woken(&s1);
    dc_growing_woken(&s2);
    /* nothing queued: true, nothing more will run */
    assert_true(dc_growing_unsubscribe(g, &s1));
    assert_false(s1.cancelled);
    dc_growing_append(g, "x", 1);
    assert_int_equal(c1.posts, 1); /* s1 is not woken any more */
    assert_int_equal(c2.posts, 2); /* s2 still is */
    /* unsubscribing one that is not (or no longer) subscribed is harmless */
    assert_true(dc_growing_unsubscribe(g, &s1));
    dc_growing_woken(&s2);
    assert_true(dc_growing_unsubscribe(g, &s2));
    /* subscribing again resets the state and wakes at once */
    dc_growing_subscribe(g, &s2);
    assert_int_equal(c2.posts, 3);
    assert_false(s2.cancelled);
    dc_growing_woken(&s2);
    assert_true(dc_growing_unsubscribe(g, &s2));
    dc_growing_release(g);
}

static void test_references(void **state)
{
    dc_body_t b;
    dc_body_init(&b, 0);
    dc_shared_body_t *sb = dc_shared_body_create(&b);
    dc_growing_t *g = dc_growing_create(sb, 0);
    assert_int_equal(atomic_load(&sb->refs), 2);
    assert_ptr_equal(dc_growing_body(g), sb);
    assert_ptr_equal(dc_growing_ref(g), g);
    dc_growing_append(g, "hello", 5);
    dc_growing_release(g);
    assert_int_equal(atomic_load(&sb->refs), 2); /* still one growing reference */
    dc_growing_release(g);
    assert_int_equal(atomic_load(&sb->refs), 1); /* the body outlives the growing for its owner */
    assert_int_equal(sb->body.len, 5);
    dc_shared_body_release(sb);
    dc_growing_release(NULL);
}

/* ---- threads: one writer, readers on their own loops ---- */

#define NREADERS 4
#define CHUNKS 4000

typedef struct reader {
    dc_growing_sub_t sub;
    dc_growing_t *g;
    size_t off;
    _Atomic int done; /* 1 = saw the whole body then the end, -1 = a byte was wrong */
    _Atomic unsigned wakeups;
} reader_t;

static char byte_at(size_t i)
{
    return (char)('a' + (i * 7 + i / 13) % 26);
}

static void on_reader_wake(dc_msg_t *m)
{
    reader_t *r = (reader_t *)((char *)m - offsetof(reader_t, sub.msg));
    atomic_fetch_add(&r->wakeups, 1);
    if (r->sub.cancelled)
        return;
    dc_growing_woken(&r->sub); /* first: an append after the read below posts a new wake-up */
    if (atomic_load(&r->done) != 0)
        return;
    const char *bases[16];
    size_t lens[16], avail;
    bool ended, error;
    for (;;) { /* a sender would take a few spans per write: read until caught up */
        size_t n = dc_growing_read(r->g, r->off, bases, lens, 16, &avail, &ended, &error);
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < lens[i]; j++)
                if (bases[i][j] != byte_at(r->off + j)) {
                    atomic_store(&r->done, -1);
                    return;
                }
            r->off += lens[i];
        }
        if (n == 0 || r->off >= avail)
            break;
    }
    if (ended && r->off == avail)
        atomic_store(&r->done, error ? -1 : 1);
}

static void subscribe_on_loop(void *arg)
{
    reader_t *r = arg;
    dc_growing_subscribe(r->g, &r->sub);
}

static void test_writer_and_reader_threads(void **state)
{
    msgloop_t loops[NREADERS];
    reader_t readers[NREADERS];
    dc_growing_t *g = new_growing(0);
    for (int i = 0; i < NREADERS; i++) {
        msgloop_start(&loops[i]);
        memset(&readers[i], 0, sizeof(readers[i]));
        readers[i].g = g;
        readers[i].sub.msg.run = on_reader_wake;
        readers[i].sub.target = &loops[i];
        readers[i].sub.post = msgloop_post;
    }
    /* half subscribe before the first byte, half while bytes arrive */
    for (int i = 0; i < NREADERS / 2; i++)
        msgloop_run_on(&loops[i], subscribe_on_loop, &readers[i]);
    char chunk[257];
    size_t total = 0;
    for (int c = 0; c < CHUNKS; c++) {
        size_t len = 1 + (size_t)(c * 31) % 256;
        for (size_t j = 0; j < len; j++)
            chunk[j] = byte_at(total + j);
        dc_growing_append(g, chunk, len);
        total += len;
        if (c == CHUNKS / 3)
            for (int i = NREADERS / 2; i < NREADERS; i++)
                msgloop_run_on(&loops[i], subscribe_on_loop, &readers[i]);
    }
    dc_growing_end(g, false);
    for (int i = 0; i < NREADERS; i++) {
        assert_true(MSGLOOP_WAIT_UNTIL(atomic_load(&readers[i].done) != 0, 20000));
        assert_int_equal(atomic_load(&readers[i].done), 1);
        assert_int_equal(readers[i].off, total);
    }
    /* unsubscribe on each reader's own loop, then stop it (runs anything still queued) */
    for (int i = 0; i < NREADERS; i++) {
        msgloop_stop(&loops[i]);
        /* every wake-up ran (the last one saw the end): nothing is queued */
        assert_true(dc_growing_unsubscribe(g, &readers[i].sub));
        assert_false(readers[i].sub.cancelled);
        assert_true(atomic_load(&readers[i].wakeups) >= 1);
    }
    dc_growing_release(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_what_arrived),
        cmocka_unit_test(test_wakeups_are_coalesced),
        cmocka_unit_test(test_unsubscribe),
        cmocka_unit_test(test_references),
        cmocka_unit_test(test_writer_and_reader_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
