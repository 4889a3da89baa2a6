#include "cmocka_prelude.h"

#include <stdlib.h>
#include <string.h>

#include "cache/l2codec.h"
#include "core/error.h"
#include <zlib.h>

static dc_cache_entry_t *sample(void)
{
    dc_body_t b;
    dc_body_init(&b, 0);
    for (int i = 0; i < 1000; i++)
        dc_body_append(&b, "{\"p\":1.5}", 9);
    dc_cache_hdr_t hs[2] = {{NULL, "content-type", 12, "application/json", 16}, {NULL, "x-a", 3, "", 0}};
    const char *tags[] = {"jup", "So111"};
    dc_cache_entry_t *e = dc_cache_entry_create("GET /jup/x", 10, 200, hs, 2, tags, 2, dc_shared_body_create(&b));
    memcpy(e->etag, "\"abc\"", 6);
    e->etag_len = 5;
    e->stored_at_ms = 1000, e->fresh_until_ms = 3000, e->swr_until_ms = 13000, e->sie_until_ms = 303000;
    e->keep_until_ms = 303000, e->origin_age_s = 7, e->no_stale = false, e->negative = true;
    e->compressible = true;
    return e;
}

static void test_round_trip(void **state)
{
    dc_cache_entry_t *e = sample();
    size_t len;
    char *buf = dc_l2_encode(e, &len);
    int err;
    dc_cache_entry_t *d = dc_l2_decode("GET /jup/x", 10, buf, len, &err);
    assert_non_null(d);
    assert_int_equal(err, 0);
    assert_int_equal(d->status, 200);
    assert_int_equal(d->nheaders, 2);
    assert_string_equal(d->headers[0].value, "application/json");
    assert_int_equal(d->headers[1].value_len, 0);
    assert_int_equal(d->ntags, 2);
    assert_string_equal(d->tags[1], "So111");
    assert_int_equal(d->body->body.len, 9000);
    assert_string_equal(d->etag, "\"abc\"");
    assert_int_equal(d->fresh_until_ms, 3000);
    assert_int_equal(d->keep_until_ms, 303000);
    assert_int_equal(d->origin_age_s, 7);
    assert_true(d->negative && d->compressible && !d->no_stale);
    dc_cache_entry_release(d);
    free(buf);
    dc_cache_entry_release(e);
}

/* The origin's validators travel as stored headers; a tag that named the origin's gzip bytes (only
 * the identity body travels) names no representation after the trip: every one gets it weak. */
static void test_validators_survive(void **state)
{
    dc_body_t b;
    dc_body_init(&b, 0);
    dc_body_append(&b, "{}", 2);
    dc_cache_hdr_t hs[2] = {{NULL, "etag", 4, "\"o1\"", 4},
                            {NULL, "last-modified", 13, "Wed, 21 Oct 2015 07:28:00 GMT", 29}};
    dc_cache_entry_t *e = dc_cache_entry_create("k", 1, 200, hs, 2, NULL, 0, dc_shared_body_create(&b));
    for (unsigned enc = 0; enc < 2; enc++) {
        e->etag_enc = (uint8_t)enc;
        size_t len;
        char *buf = dc_l2_encode(e, &len);
        int err;
        dc_cache_entry_t *d = dc_l2_decode("k", 1, buf, len, &err);
        assert_non_null(d);
        assert_string_equal(d->origin_etag, "\"o1\"");
        assert_string_equal(d->origin_last_modified, "Wed, 21 Oct 2015 07:28:00 GMT");
        assert_int_equal(d->etag_len, 0);
        assert_int_equal(d->etag_enc, enc == 0 ? 0 : 3);
        dc_cache_entry_release(d);
        free(buf);
    }
    dc_cache_entry_release(e);
}

static void test_every_corruption_is_a_miss(void **state)
{
    dc_cache_entry_t *e = sample();
    size_t len;
    char *buf = dc_l2_encode(e, &len);
    int err;
    /* every truncation */
    for (size_t n = 0; n < len; n += 97)
        assert_null(dc_l2_decode("k", 1, buf, n, &err));
    /* every flipped byte (checksum) */
    for (size_t i = 0; i < len; i += 131) {
        buf[i] ^= 0x5a;
        assert_null(dc_l2_decode("k", 1, buf, len, &err));
        buf[i] ^= 0x5a;
    }
    /* an unknown version, with a valid checksum */
    buf[4] = 9;
    uLong crc = crc32(0, (const Bytef *)buf, (uInt)(len - 4));
    for (int i = 0; i < 4; i++)
        buf[len - 4 + (size_t)i] = (char)(crc >> (8 * i));
    assert_null(dc_l2_decode("k", 1, buf, len, &err));
    assert_int_equal(err, DC_ERANGE);
    assert_null(dc_l2_decode("k", 1, "garbage", 7, &err));
    assert_int_equal(err, DC_EPROTO);
    free(buf);
    dc_cache_entry_release(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_round_trip), cmocka_unit_test(test_validators_survive),
                                       cmocka_unit_test(test_every_corruption_is_a_miss)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
