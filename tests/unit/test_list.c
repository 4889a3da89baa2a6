/* Unit tests for core/list.h, the one intrusive doubly-linked list: order of push_back / push_front,
 * removal from the front, the middle and the back, a node is unlinked after remove, the safe foreach
 * survives removing (and freeing) the current node, pop_front, splice, container_of, and a zeroed
 * list aborts on first use instead of corrupting memory. */
#include "cmocka_prelude.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/list.h"

typedef struct item {
    int value;
    dc_list_node_t link;
} item_t;

static item_t *item_of(dc_list_node_t *n)
{
    return dc_container_of(n, item_t, link);
}

/* the values of `l` front to back into out[], returns the count (also checks the back links) */
static size_t values(const dc_list_t *l, int *out, size_t cap)
{
    size_t n = 0;
    const dc_list_node_t *node;
    dc_list_foreach (node, l) {
        assert_true(node->_next->_prev == node);
        assert_true(n < cap);
        out[n++] = dc_container_of(node, item_t, link)->value;
    }
    return n;
}

static void test_empty(void **state)
{
    (void)state;
    dc_list_t l;
    dc_list_init(&l);
    assert_true(dc_list_empty(&l));
    assert_null(dc_list_first(&l));
    assert_null(dc_list_last(&l));
    assert_null(dc_list_pop_front(&l));
    int v[1];
    assert_int_equal(values(&l, v, 1), 0);
}

static void test_push_order(void **state)
{
    (void)state;
    dc_list_t l;
    dc_list_init(&l);
    item_t it[4] = {{.value = 1}, {.value = 2}, {.value = 3}, {.value = 4}};
    for (int i = 0; i < 4; i++)
        assert_false(dc_list_node_linked(&it[i].link));
    dc_list_push_back(&l, &it[1].link);  /* 2 */
    dc_list_push_back(&l, &it[2].link);  /* 2 3 */
    dc_list_push_front(&l, &it[0].link); /* 1 2 3 */
    dc_list_push_back(&l, &it[3].link);  /* 1 2 3 4 */
    int v[8];
    assert_int_equal(values(&l, v, 8), 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(v[i], i + 1);
        assert_true(dc_list_node_linked(&it[i].link));
    }
    assert_ptr_equal(item_of(dc_list_first(&l)), &it[0]);
    assert_ptr_equal(item_of(dc_list_last(&l)), &it[3]);
    assert_ptr_equal(dc_list_next(&l, &it[1].link), &it[2].link);
    assert_null(dc_list_next(&l, &it[3].link));
    assert_false(dc_list_empty(&l));
}

static void test_remove_positions(void **state)
{
    (void)state;
    dc_list_t l;
    dc_list_init(&l);
    item_t it[5];
    for (int i = 0; i < 5; i++) {
        it[i] = (item_t){.value = i};
        dc_list_push_back(&l, &it[i].link);
    }
    dc_list_remove(&it[2].link); /* middle */
    dc_list_remove(&it[0].link); /* front */
    dc_list_remove(&it[4].link); /* back */
    assert_false(dc_list_node_linked(&it[2].link));
    assert_null(it[0].link._prev);
    assert_null(it[0].link._next);
    int v[8];
    assert_int_equal(values(&l, v, 8), 2);
    assert_int_equal(v[0], 1);
    assert_int_equal(v[1], 3);
    /* a removed node can be pushed again */
    dc_list_push_front(&l, &it[2].link);
    assert_int_equal(values(&l, v, 8), 3);
    assert_int_equal(v[0], 2);
    dc_list_remove(&it[1].link);
    dc_list_remove(&it[3].link);
    dc_list_remove(&it[2].link);
    assert_true(dc_list_empty(&l));
}

static void test_foreach_safe_removes_current(void **state)
{
    (void)state;
    dc_list_t l;
    dc_list_init(&l);
    for (int i = 0; i < 10; i++) {
        item_t *it = calloc(1, sizeof(*it));
        assert_non_null(it);
        it->value = i;
        dc_list_push_back(&l, &it->link);
    }
    /* remove and free the odd ones while walking (ASan sees any touch of a freed node) */
    dc_list_node_t *node, *tmp;
    int seen = 0;
    dc_list_foreach_safe (node, tmp, &l) {
        item_t *it = item_of(node);
        assert_int_equal(it->value, seen++);
        if (it->value % 2 == 1) {
            dc_list_remove(node);
            free(it);
        }
    }
    assert_int_equal(seen, 10);
    int v[16];
    assert_int_equal(values(&l, v, 16), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(v[i], 2 * i);
    /* and empty it completely the same way */
    dc_list_foreach_safe (node, tmp, &l) {
        dc_list_remove(node);
        free(item_of(node));
    }
    assert_true(dc_list_empty(&l));
}

static void test_pop_front_fifo(void **state)
{
    (void)state;
    dc_list_t l;
    dc_list_init(&l);
    item_t it[3] = {{.value = 7}, {.value = 8}, {.value = 9}};
    for (int i = 0; i < 3; i++)
        dc_list_push_back(&l, &it[i].link);
    for (int i = 0; i < 3; i++) {
        dc_list_node_t *n = dc_list_pop_front(&l);
        assert_non_null(n);
        assert_false(dc_list_node_linked(n));
        assert_int_equal(item_of(n)->value, 7 + i);
    }
    assert_null(dc_list_pop_front(&l));
}

static void test_splice_back(void **state)
{
    (void)state;
    dc_list_t a, b;
    dc_list_init(&a);
    dc_list_init(&b);
    item_t it[5];
    for (int i = 0; i < 5; i++) {
        it[i] = (item_t){.value = i};
        dc_list_push_back(i < 2 ? &a : &b, &it[i].link);
    }
    dc_list_splice_back(&a, &b);
    assert_true(dc_list_empty(&b));
    int v[8];
    assert_int_equal(values(&a, v, 8), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(v[i], i);
    /* into an empty list, and from an empty list */
    dc_list_splice_back(&b, &a);
    assert_true(dc_list_empty(&a));
    assert_int_equal(values(&b, v, 8), 5);
    dc_list_splice_back(&b, &a);
    assert_int_equal(values(&b, v, 8), 5);
    assert_int_equal(v[4], 4);
}

static void test_container_of(void **state)
{
    (void)state;
    item_t it = {.value = 42};
    assert_ptr_equal(dc_container_of(&it.link, item_t, link), &it);
    assert_ptr_equal(dc_container_of(&it.value, item_t, value), &it);
}

/* a list that was never initialised aborts on first use (DC_ASSERT) */
static void test_zeroed_list_aborts(void **state)
{
    (void)state;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dc_list_t l = {0};
        item_t it = {.value = 1};
        dc_list_push_back(&l, &it.link);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_push_order),
        cmocka_unit_test(test_remove_positions),
        cmocka_unit_test(test_foreach_safe_removes_current),
        cmocka_unit_test(test_pop_front_fifo),
        cmocka_unit_test(test_splice_back),
        cmocka_unit_test(test_container_of),
        cmocka_unit_test(test_zeroed_list_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
