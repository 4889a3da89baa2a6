#include "cmocka_prelude.h"

#include <stdio.h>
#include <string.h>

#include "cache/jsonobj.h"
#include "core/error.h"

typedef struct acc {
    char out[512];
    size_t n;
    int count;
} acc_t;

static int collect(void *data, const dc_json_member_t *m)
{
    acc_t *a = data;
    a->n += (size_t)snprintf(a->out + a->n, sizeof(a->out) - a->n, "[%.*s]=[%.*s];", (int)m->key_len, m->key,
                             (int)m->value_len, m->value);
    a->count++;
    return 0;
}

static void ok(const char *json, const char *want, int count)
{
    acc_t a = {{0}, 0, 0};
    assert_int_equal(dc_json_object_members(json, strlen(json), collect, &a), 0);
    assert_string_equal(a.out, want);
    assert_int_equal(a.count, count);
}

static void bad(const char *json)
{
    acc_t a = {{0}, 0, 0};
    assert_int_equal(dc_json_object_members(json, strlen(json), collect, &a), DC_EPROTO);
}

/* Values come back as the exact bytes the upstream sent, nested or not. */
static void test_members(void **state)
{
    ok("{}", "", 0);
    ok(" { } ", "", 0);
    ok("{\"a\":1}", "[a]=[1];", 1);
    ok("{\"So1\": {\"usdPrice\": 1.5e-3, \"x\": [1, {\"y\": \"}\\\"\"}], \"n\": null} , \"b\" : true }",
       "[So1]=[{\"usdPrice\": 1.5e-3, \"x\": [1, {\"y\": \"}\\\"\"}], \"n\": null}];[b]=[true];", 2);
    ok("{\"a\":[],\"b\":{},\"c\":\"\",\"d\":-0.5,\"e\":false}", "[a]=[[]];[b]=[{}];[c]=[\"\"];[d]=[-0.5];[e]=[false];",
       5);
}

static void test_malformed(void **state)
{
    bad("");
    bad("[1]");
    bad("{\"a\"}");
    bad("{\"a\":}");
    bad("{\"a\":1,}");
    bad("{\"a\":1} x");
    bad("{\"a\":[1,2}");
    bad("{\"a\":tru}");
    bad("{\"a\":\"unterminated}");
    bad("{a:1}");
    char deep[200];
    memset(deep, '[', sizeof(deep));
    memcpy(deep, "{\"a\":", 5);
    deep[sizeof(deep) - 1] = '\0';
    bad(deep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
