#include "cmocka_prelude.h"

#include <stdio.h>
#include <string.h>

#include "cache/store.h"
#include "core/error.h"

static dc_cache_entry_t *make(const char *key, size_t body_len, uint64_t keep_until)
{
    dc_body_t b;
    dc_body_init(&b, body_len);
    char buf[4096];
    memset(buf, 'x', sizeof(buf));
    for (size_t left = body_len; left > 0;) {
        size_t n = left < sizeof(buf) ? left : sizeof(buf);
        dc_body_append(&b, buf, n);
        left -= n;
    }
    dc_cache_hdr_t h = {NULL, "content-type", 12, "application/json", 16};
    const char *tags[] = {"jup", "mintA"};
    dc_cache_entry_t *e = dc_cache_entry_create(key, strlen(key), 200, &h, 1, tags, 2, dc_shared_body_create(&b));
    e->fresh_until_ms = e->swr_until_ms = e->sie_until_ms = e->keep_until_ms = keep_until;
    return e;
}

static void insert(dc_cache_t *c, dc_cache_entry_t *e)
{
    assert_int_equal(dc_cache_insert(c, e, 0), 0);
    dc_cache_entry_release(e);
}

static void test_lookup_and_expiry(void **state)
{
    dc_cache_t *c = dc_cache_create(1 << 20, 1 << 20);
    insert(c, make("GET /a", 100, 1000));
    dc_cache_entry_t *e = dc_cache_lookup(c, "GET /a", 6, dc_cache_hash("GET /a", 6), 999);
    assert_non_null(e);
    assert_int_equal(e->body->body.len, 100);
    assert_string_equal(dc_cache_entry_header(e, "content-type", 12)->value, "application/json");
    dc_cache_entry_release(e);
    assert_null(dc_cache_lookup(c, "GET /b", 6, dc_cache_hash("GET /b", 6), 0));
    /* past keep_until the entry is dropped on lookup */
    assert_null(dc_cache_lookup(c, "GET /a", 6, dc_cache_hash("GET /a", 6), 1000));
    dc_cache_stats_t st;
    dc_cache_get_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.expired, 1);
    dc_cache_destroy(c);
}

static void test_budget_and_lru(void **state)
{
    dc_cache_t *c = dc_cache_create(64 * 1024, 64 * 1024);
    char key[32];
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "GET /k%d", i);
        insert(c, make(key, 4000, 1000000));
        /* keep /k0 hot: it must survive */
        dc_cache_entry_t *hot = dc_cache_lookup(c, "GET /k0", 7, dc_cache_hash("GET /k0", 7), 0);
        if (hot != NULL)
            dc_cache_entry_release(hot);
    }
    dc_cache_stats_t st;
    dc_cache_get_stats(c, &st);
    assert_true(st.bytes <= 64 * 1024);
    assert_true(st.evictions > 20);
    assert_true(st.entries + st.evictions == 40);
    dc_cache_entry_t *e = dc_cache_lookup(c, "GET /k39", 8, dc_cache_hash("GET /k39", 8), 0);
    assert_non_null(e);
    dc_cache_entry_release(e);
    /* too big for max_object */
    dc_cache_entry_t *big = make("GET /big", 70 * 1024, 1000000);
    assert_int_equal(dc_cache_insert(c, big, 0), DC_ETOOBIG);
    dc_cache_entry_release(big);
    dc_cache_destroy(c);
}

static void test_evicted_entry_outlives_store(void **state)
{
    dc_cache_t *c = dc_cache_create(1 << 20, 1 << 20);
    insert(c, make("GET /x", 1000, 100));
    dc_cache_entry_t *reader = dc_cache_lookup(c, "GET /x", 6, dc_cache_hash("GET /x", 6), 0);
    assert_int_equal(dc_cache_purge(c, DC_PURGE_KEY, "GET /x", 6, 10), 1);
    /* the reader's reference keeps body and headers valid (ASan would catch a use after free) */
    assert_int_equal(reader->body->body.len, 1000);
    assert_int_equal(reader->body->body.chunks[0].data[999], 'x');
    dc_cache_entry_release(reader);
    dc_cache_destroy(c);
}

static void test_replace_only_if_current(void **state)
{
    dc_cache_t *c = dc_cache_create(1 << 20, 1 << 20);
    dc_cache_entry_t *v1 = make("GET /r", 10, 1000);
    assert_int_equal(dc_cache_insert(c, v1, 0), 0);
    dc_cache_entry_t *succ = dc_cache_entry_clone(v1);
    assert_ptr_equal(succ->body, v1->body); /* shared, not copied */
    assert_int_equal(dc_cache_replace(c, v1, succ, 0), 0);
    dc_cache_entry_t *got = dc_cache_lookup(c, "GET /r", 6, v1->hash, 0);
    assert_ptr_equal(got, succ);
    dc_cache_entry_release(got);
    /* v1 is no longer current: a late successor of it must not overwrite the newer entry */
    dc_cache_entry_t *late = dc_cache_entry_clone(v1);
    assert_int_equal(dc_cache_replace(c, v1, late, 0), DC_ENOTFOUND);
    dc_cache_entry_release(late);
    dc_cache_entry_release(succ);
    dc_cache_entry_release(v1);
    dc_cache_destroy(c);
}

static void test_purge_prefix_and_tag(void **state)
{
    dc_cache_t *c = dc_cache_create(1 << 20, 1 << 20);
    insert(c, make("GET /jup/a", 10, 1000));
    insert(c, make("GET /jup/b", 10, 1000));
    insert(c, make("GET /met/a", 10, 1000));
    assert_int_equal(dc_cache_purge(c, DC_PURGE_PREFIX, "GET /jup/", 9, 10), 2);
    assert_int_equal(dc_cache_purge(c, DC_PURGE_TAG, "mintA", 5, 10), 1);
    assert_int_equal(dc_cache_purge(c, DC_PURGE_TAG, "mint", 4, 10), 0);
    dc_cache_stats_t st;
    dc_cache_get_stats(c, &st);
    assert_int_equal(st.entries, 0);
    dc_cache_destroy(c);
}

static dc_cache_entry_t *make_at(const char *key, uint64_t stored_at)
{
    dc_cache_entry_t *e = make(key, 10, 100000);
    e->stored_at_ms = stored_at;
    return e;
}

/* A purge carries its time: copies stored after it survive (a late or repeated purge from another
 * instance is harmless), copies stored before it are removed here and refused when they come back
 * from L2. */
static void test_purge_at_time_and_l2_refusal(void **state)
{
    dc_cache_t *c = dc_cache_create(1 << 20, 1 << 20);
    insert(c, make_at("GET /jup/old", 100));
    insert(c, make_at("GET /jup/new", 300));
    assert_int_equal(dc_cache_purge(c, DC_PURGE_PREFIX, "GET /jup/", 9, 200), 1);
    dc_cache_entry_t *e = dc_cache_lookup(c, "GET /jup/new", 12, dc_cache_hash("GET /jup/new", 12), 0);
    assert_non_null(e);
    dc_cache_entry_release(e);
    assert_null(dc_cache_lookup(c, "GET /jup/old", 12, dc_cache_hash("GET /jup/old", 12), 0));
    assert_int_equal(dc_cache_purge(c, DC_PURGE_KEY, "GET /jup/new", 12, 250), 0); /* stored after */
    assert_int_equal(dc_cache_purge(c, DC_PURGE_PREFIX, "GET /jup/", 9, 200), 0);  /* again: nothing */

    dc_cache_entry_t *l2_old = make_at("GET /jup/x", 150), *l2_new = make_at("GET /jup/x", 201);
    dc_cache_entry_t *other = make_at("GET /met/x", 10), *tagged = make_at("GET /met/y", 350);
    assert_true(dc_cache_purged(c, l2_old));
    assert_false(dc_cache_purged(c, l2_new));
    assert_false(dc_cache_purged(c, other));
    assert_false(dc_cache_purged(c, tagged));
    dc_cache_purge(c, DC_PURGE_TAG, "mintA", 5, 400);
    assert_true(dc_cache_purged(c, tagged));
    assert_true(dc_cache_purged(c, other));
    dc_cache_entry_release(l2_old);
    dc_cache_entry_release(l2_new);
    dc_cache_entry_release(other);
    dc_cache_entry_release(tagged);
    dc_cache_destroy(c);
}

/* The log is bounded: the same purge is kept once, and when old purges must go their time
 * becomes a floor under which every copy counts as purged. */
static void test_purgelog_bounded(void **state)
{
    dc_purgelog_t pl;
    dc_purgelog_init(&pl);
    for (int i = 0; i < 10; i++)
        dc_purgelog_add(&pl, DC_PURGE_KEY, "GET /a", 6, 100 + (uint64_t)i);
    assert_int_equal(pl.count, 1);
    assert_true(dc_purgelog_covers(&pl, "GET /a", 6, NULL, 0, 109));
    assert_false(dc_purgelog_covers(&pl, "GET /a", 6, NULL, 0, 110));
    char k[32];
    for (int i = 0; i < DC_PURGELOG_MAX + 5; i++) {
        int n = snprintf(k, sizeof(k), "GET /k%d", i);
        dc_purgelog_add(&pl, DC_PURGE_KEY, k, (size_t)n, 1000 + (uint64_t)i);
    }
    assert_int_equal(pl.count, DC_PURGELOG_MAX);
    assert_int_equal(pl.floor_ms, 1004); /* "GET /a" (109) and /k0../k4 (1000..1004) had to go */
    assert_true(dc_purgelog_covers(&pl, "GET /zzz", 8, NULL, 0, 1004));
    assert_false(dc_purgelog_covers(&pl, "GET /zzz", 8, NULL, 0, 1005));
    assert_true(dc_purgelog_covers(&pl, "GET /k900", 9, NULL, 0, 1005));
    dc_purgelog_dispose(&pl);
}

/* ---- Vary: records and variants ---- */

static dc_cache_entry_t *make_record(const char *key, const char *names, unsigned max, uint64_t keep)
{
    dc_cache_hdr_t h = {NULL, "vary", 4, names, strlen(names)};
    dc_cache_entry_t *e = dc_cache_entry_create(key, strlen(key), 0, &h, 1, NULL, 0, NULL);
    e->is_vary = true;
    e->vary_max = max;
    e->keep_until_ms = keep;
    return e;
}

static dc_cache_entry_t *make_variant(const char *key, const char *names, uint64_t keep)
{
    dc_body_t b;
    dc_body_init(&b, 0);
    dc_body_append(&b, key, strlen(key));
    dc_cache_hdr_t h = {NULL, "vary", 4, names, strlen(names)};
    const char *tags[] = {"jup"};
    dc_cache_entry_t *e = dc_cache_entry_create(key, strlen(key), 200, &h, 1, tags, 1, dc_shared_body_create(&b));
    e->fresh_until_ms = e->swr_until_ms = e->sie_until_ms = e->keep_until_ms = keep;
    return e;
}

static int insert_v(dc_cache_t *c, dc_cache_entry_t *e, bool *evicted)
{
    int rc = dc_cache_insert_variant(c, e, 0, evicted);
    dc_cache_entry_release(e);
    return rc;
}

static bool present(dc_cache_t *c, const char *key)
{
    size_t l = strlen(key);
    size_t pl = 0;
    while (pl < l && strncmp(key + pl, " {vary}", 7) != 0)
        pl++;
    uint64_t h = dc_cache_hash(key, l);
    if (pl < l)
        h = (h & ~0xffull) | (dc_cache_hash(key, pl) & 0xff);
    dc_cache_entry_t *e = dc_cache_lookup(c, key, l, h, 1);
    dc_cache_entry_release(e);
    return e != NULL;
}

#define VA "GET /v {vary} accept-language:en"
#define VB "GET /v {vary} accept-language:fr"
#define VC "GET /v {vary} accept-language:de"

static void test_vary_variants(void **state)
{
    dc_cache_t *c = dc_cache_create(1 << 20, 1 << 20);
    bool ev;
    /* no record: a variant is not stored */
    assert_int_equal(insert_v(c, make_variant(VA, "accept-language", 1000), &ev), DC_ENOTFOUND);
    assert_false(present(c, VA));
    insert(c, make_record("GET /v", "accept-language", 2, 10));
    assert_int_equal(insert_v(c, make_variant(VA, "accept-language", 1000), &ev), 0);
    assert_false(ev);
    assert_int_equal(insert_v(c, make_variant(VB, "accept-language", 1000), &ev), 0);
    assert_false(ev);
    /* the record lives as long as its longest variant */
    dc_cache_entry_t *r = dc_cache_lookup(c, "GET /v", 6, dc_cache_hash("GET /v", 6), 500);
    assert_non_null(r);
    assert_true(r->is_vary);
    assert_int_equal(r->nvariants, 2);
    dc_cache_entry_release(r);
    /* a variant with other names than the record's is refused */
    assert_int_equal(insert_v(c, make_variant(VC, "x-other", 1000), &ev), DC_ENOTFOUND);
    /* the limit: VA was used last, so VB (least recently used) goes for VC */
    assert_true(present(c, VA));
    assert_int_equal(insert_v(c, make_variant(VC, "accept-language", 1000), &ev), 0);
    assert_true(ev);
    assert_true(present(c, VA));
    assert_false(present(c, VB));
    assert_true(present(c, VC));
    /* replacing a variant does not count against the limit */
    assert_int_equal(insert_v(c, make_variant(VC, "accept-language", 1000), &ev), 0);
    assert_false(ev);
    assert_true(present(c, VA));
    /* the same record again keeps the variants */
    insert(c, make_record("GET /v", "accept-language", 2, 10));
    assert_true(present(c, VA));
    assert_true(present(c, VC));
    /* a record with other names drops them */
    insert(c, make_record("GET /v", "accept-language,x-t", 2, 10));
    assert_false(present(c, VA));
    assert_false(present(c, VC));
    dc_cache_stats_t st;
    dc_cache_get_stats(c, &st);
    assert_int_equal(st.entries, 1);
    /* a plain entry replacing the record drops its variants too */
    insert(c, make_record("GET /v", "accept-language", 2, 10));
    assert_int_equal(insert_v(c, make_variant(VA, "accept-language", 1000), &ev), 0);
    insert(c, make("GET /v", 10, 1000));
    assert_false(present(c, VA));
    dc_cache_get_stats(c, &st);
    assert_int_equal(st.entries, 1);
    dc_cache_destroy(c);
}

static void test_vary_purge(void **state)
{
    dc_cache_t *c = dc_cache_create(1 << 20, 1 << 20);
    bool ev;
    for (int kind = 0; kind < 3; kind++) {
        insert(c, make_record("GET /v", "accept-language", 8, 10));
        assert_int_equal(insert_v(c, make_variant(VA, "accept-language", 1000), &ev), 0);
        assert_int_equal(insert_v(c, make_variant(VB, "accept-language", 1000), &ev), 0);
        size_t n = kind == 0   ? dc_cache_purge(c, DC_PURGE_KEY, "GET /v", 6, 10)
                   : kind == 1 ? dc_cache_purge(c, DC_PURGE_PREFIX, "GET /", 5, 10)
                               : dc_cache_purge(c, DC_PURGE_TAG, "jup", 3, 10);
        assert_int_equal(n, kind == 2 ? 2 : 3); /* the record carries no tag: its variants go by theirs */
        assert_false(present(c, VA));
        assert_false(present(c, VB));
        /* an L2 copy of a variant stored before the purge is refused */
        dc_cache_entry_t *l2 = make_variant(VA, "accept-language", 1000);
        assert_true(dc_cache_purged(c, l2));
        dc_cache_entry_release(l2);
        dc_cache_purge(c, DC_PURGE_KEY, "GET /v", 6, 10); /* the record left by the tag purge */
    }
    dc_cache_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_and_expiry),
        cmocka_unit_test(test_budget_and_lru),
        cmocka_unit_test(test_evicted_entry_outlives_store),
        cmocka_unit_test(test_replace_only_if_current),
        cmocka_unit_test(test_purge_prefix_and_tag),
        cmocka_unit_test(test_purge_at_time_and_l2_refusal),
        cmocka_unit_test(test_purgelog_bounded),
        cmocka_unit_test(test_vary_variants),
        cmocka_unit_test(test_vary_purge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
