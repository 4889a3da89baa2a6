#include "cmocka_prelude.h"

#include "upstream/keyring.h"

#include <string.h>
#include "upstream/upstream_state.h"

static char *keys3[] = {"k0", "k1", "k2"};

static void test_round_robin(void **state)
{
    dc_keyring_t kr;
    dc_keyring_init(&kr, keys3, 3, 60000);
    int seen[3] = {0};
    for (int i = 0; i < 30; i++)
        seen[dc_keyring_pick(&kr, 1000)]++;
    assert_int_equal(seen[0], 10);
    assert_int_equal(seen[1], 10);
    assert_int_equal(seen[2], 10);
    dc_keyring_dispose(&kr);
}

static void test_quarantine(void **state)
{
    dc_keyring_t kr;
    dc_keyring_init(&kr, keys3, 3, 60000);
    assert_int_equal(dc_keyring_quarantine(&kr, 1, 1000), 1);
    assert_int_equal(dc_keyring_quarantine(&kr, 1, 1001), 0); /* already set aside */
    assert_int_equal(dc_keyring_usable(&kr, 1000), 2);
    for (int i = 0; i < 20; i++)
        assert_int_not_equal(dc_keyring_pick(&kr, 2000), 1);
    /* the second report extended the quarantine to 1001 + 60000 */
    assert_int_equal(dc_keyring_usable(&kr, 61000), 2);
    assert_int_equal(dc_keyring_usable(&kr, 61001), 3);
    int seen1 = 0;
    for (int i = 0; i < 9; i++)
        seen1 += dc_keyring_pick(&kr, 61001) == 1;
    assert_int_equal(seen1, 3);
    dc_keyring_dispose(&kr);
}

/* Ids are stable, distinct, hex, and never the key; a quarantine reported by another instance
 * only ever extends the local one. */
static void test_ids_and_remote_quarantine(void **state)
{
    dc_keyring_t kr;
    dc_keyring_init(&kr, keys3, 3, 60000);
    assert_int_equal(strlen(kr.ids[1]), DC_KEYRING_ID_LEN);
    assert_int_equal(dc_keyring_find_id(&kr, kr.ids[1], DC_KEYRING_ID_LEN), 1);
    assert_int_equal(dc_keyring_find_id(&kr, "0000000000000000", 16), -1);
    assert_int_equal(dc_keyring_find_id(&kr, kr.ids[1], 15), -1);
    assert_string_not_equal(kr.ids[0], kr.ids[1]);
    for (const char *p = kr.ids[2]; *p; p++)
        assert_true((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'));

    assert_int_equal(dc_keyring_quarantine_until(&kr, 1, 1000, 5000), 1);
    assert_int_equal(dc_keyring_quarantine_until(&kr, 1, 1000, 3000), 0); /* shorter: kept at 5000 */
    assert_int_equal(dc_keyring_usable(&kr, 4999), 2);
    assert_int_equal(dc_keyring_usable(&kr, 5000), 3);
    assert_int_equal(dc_keyring_quarantine_until(&kr, 0, 1000, 900), 0); /* already over */
    assert_int_equal(dc_keyring_usable(&kr, 1000), 2);
    assert_int_equal(dc_keyring_quarantine_until(&kr, 7, 1000, 9000), 0);
    dc_keyring_dispose(&kr);
}

static void test_all_quarantined(void **state)
{
    dc_keyring_t kr;
    dc_keyring_init(&kr, keys3, 3, 60000);
    dc_keyring_quarantine(&kr, 0, 1000);
    dc_keyring_quarantine(&kr, 1, 500); /* ends first: 60500 */
    dc_keyring_quarantine(&kr, 2, 2000);
    assert_int_equal(dc_keyring_usable(&kr, 3000), 0);
    assert_int_equal(dc_keyring_pick(&kr, 3000), 1);
    dc_keyring_dispose(&kr);
}

static void test_no_keys_and_inherit(void **state)
{
    dc_keyring_t kr, old;
    dc_keyring_init(&kr, NULL, 0, 1000);
    assert_int_equal(dc_keyring_pick(&kr, 5), -1);
    dc_keyring_dispose(&kr);
    char *oldkeys[] = {"k2", "kx"};
    dc_keyring_init(&old, oldkeys, 2, 60000);
    dc_keyring_quarantine(&old, 0, 1000);
    dc_keyring_init(&kr, keys3, 3, 60000);
    dc_keyring_inherit(&kr, &old);
    assert_int_equal(dc_keyring_usable(&kr, 2000), 2);
    assert_int_equal(dc_keyring_usable(&kr, 61000), 3);
    dc_keyring_dispose(&kr);
    dc_keyring_dispose(&old);
}

static void test_upstream_state(void **state)
{
    dc_upstream_state_t s = {0};
    assert_string_equal(dc_upstream_state_name(&s, 0), "unknown");
    dc_upstream_state_success(&s, 10);
    assert_string_equal(dc_upstream_state_name(&s, 10), "up");
    dc_upstream_state_failure(&s, 11);
    dc_upstream_state_failure(&s, 12);
    assert_string_equal(dc_upstream_state_name(&s, 12), "up");
    dc_upstream_state_failure(&s, 13);
    assert_string_equal(dc_upstream_state_name(&s, 13), "down");
    dc_upstream_state_success(&s, 14);
    assert_string_equal(dc_upstream_state_name(&s, 14), "up");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin),         cmocka_unit_test(test_quarantine),
        cmocka_unit_test(test_all_quarantined),     cmocka_unit_test(test_no_keys_and_inherit),
        cmocka_unit_test(test_upstream_state),      cmocka_unit_test(test_ids_and_remote_quarantine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
