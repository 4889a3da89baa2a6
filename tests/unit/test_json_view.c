/* json_view's core (lua-free-plugins/json_view/jv.h): the one-pass scanner (member spans, top-level
 * fields only, nested values skipped, strings with escaped quotes, refusals with the offset), the
 * numbers of values, the query parser (every refusal names its parameter), and answers from an
 * index (match any-of across fields, min/max, sort both ways with ties in source order and members
 * without the field last, offset/limit, projection with the source's value bytes). */
#include "cmocka_prelude.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jv.h"

typedef struct acc {
    char out[1024];
    size_t n;
} acc_t;

static int on_field(void *ud, const char *k, size_t kl, const char *v, size_t vl)
{
    acc_t *a = ud;
    a->n += (size_t)snprintf(a->out + a->n, sizeof(a->out) - a->n, "%.*s=%.*s;", (int)kl, k, (int)vl, v);
    return 0;
}

static int on_member(void *ud, size_t start, size_t end)
{
    acc_t *a = ud;
    a->n += (size_t)snprintf(a->out + a->n, sizeof(a->out) - a->n, "<%zu,%zu>", start, end);
    return 0;
}

static const jv_scan_ops_t ops = {on_field, on_member};

static void scan_ok(const char *json, long members, const char *want)
{
    acc_t a = {{0}, 0};
    size_t at = 0;
    assert_int_equal(jv_scan_array(json, strlen(json), &ops, &a, &at), members);
    assert_string_equal(a.out, want);
}

static void scan_bad(const char *json, size_t err_at)
{
    acc_t a = {{0}, 0};
    size_t at = 12345;
    assert_int_equal(jv_scan_array(json, strlen(json), &ops, &a, &at), -1);
    assert_int_equal(at, err_at);
}

static void test_scan_members_and_fields(void **state)
{
    (void)state;
    scan_ok("[]", 0, "");
    scan_ok(" [ ] \n", 0, "");
    scan_ok("[{\"a\":1,\"b\":\"x\"},{}]", 2, "a=1;b=\"x\";<1,16><17,19>");
    /* nested values are one field each, skipped whole (brackets inside strings too) */
    scan_ok("[{\"a\":{\"b\":[1,{\"c\":\"]}\"}]},\"d\":[ ]}]", 1, "a={\"b\":[1,{\"c\":\"]}\"}]};d=[ ];<1,35>");
    /* escaped quotes and backslashes in strings */
    scan_ok("[{\"k\\\"ey\":\"v\\\\\",\"z\":\"\\\"\"}]", 1, "k\\\"ey=\"v\\\\\";z=\"\\\"\";<1,25>");
    /* whitespace everywhere; members that are not objects have no fields */
    scan_ok("[ { \"a\" : true , \"b\" : null } , 5 , \"s\" , [1] ]", 4, "a=true;b=null;<2,29><32,33><36,39><42,45>");
    scan_ok("[{\"n\":-1.5e3}]", 1, "n=-1.5e3;<1,13>");
}

static void test_scan_refusals(void **state)
{
    (void)state;
    scan_bad("", 0);
    scan_bad("{}", 0);
    scan_bad("[", 1);
    scan_bad("[{\"a\":1}", 8);
    scan_bad("[{\"a\":1},]", 9);
    scan_bad("[{\"a\" 1}]", 6);
    scan_bad("[{a:1}]", 2);
    scan_bad("[{\"a\":}]", 6);
    scan_bad("[{\"a\":\"x}]", 6);
    scan_bad("[{\"a\":[1,2}]", 6);
    scan_bad("[1] x", 4);
    scan_bad("[{\"a\":1}{\"b\":2}]", 8);
}

static int stop_at_second(void *ud, size_t start, size_t end)
{
    (void)start, (void)end;
    return ++*(int *)ud == 2 ? -1 : 0;
}

static void test_scan_callback_stops(void **state)
{
    (void)state;
    int n = 0;
    jv_scan_ops_t stop = {NULL, stop_at_second};
    assert_true(jv_scan_array("[1,2,3]", 7, &stop, &n, NULL) < -1);
    assert_int_equal(n, 2);
}

static void test_numbers(void **state)
{
    (void)state;
    double d;
    assert_true(jv_number("12.5", 4, &d) && d == 12.5);
    assert_true(jv_number("\"12.5\"", 6, &d) && d == 12.5); /* Meteora's liquidity is a string */
    assert_true(jv_number("-1e3", 4, &d) && d == -1000);
    assert_false(jv_number("\"\"", 2, &d));
    assert_false(jv_number("\"abc\"", 5, &d));
    assert_false(jv_number("nan", 3, &d));
    assert_false(jv_number("\"inf\"", 5, &d));
    assert_false(jv_number("0x10", 4, &d));
    assert_false(jv_number("true", 4, &d));
    assert_false(jv_number("1.5.2", 5, &d));
    assert_false(jv_number("1e999", 5, &d));
}

/* The config: match {mint: [mint_x, mint_y], address: [address]}, min [liquidity, vol],
 * max [liquidity], sort [liquidity, vol], max_limit 100. */
static void make_conf(jv_conf_t *c)
{
    memset(c, 0, sizeof(*c));
    c->max_limit = 100;
    c->default_limit = 100;
    jv_match_t *m = &c->match[c->nmatch++];
    m->qname = strdup("mint");
    m->fields[m->nfields++] = (unsigned)jv_conf_field(c, "mint_x");
    m->fields[m->nfields++] = (unsigned)jv_conf_field(c, "mint_y");
    m = &c->match[c->nmatch++];
    m->qname = strdup("address");
    m->fields[m->nfields++] = (unsigned)jv_conf_field(c, "address");
    for (unsigned i = 0; i < c->nfields; i++)
        c->is_match[i] = true;
    int l = jv_conf_field(c, "liquidity"), v = jv_conf_field(c, "vol");
    c->is_num[l] = c->is_num[v] = c->has_min[l] = c->has_min[v] = c->has_max[l] = true;
    c->is_sort[l] = c->is_sort[v] = true;
}

static void parse_bad(const char *qs, const char *msg)
{
    jv_conf_t c;
    make_conf(&c);
    jv_query_t q;
    char err[128] = "";
    assert_int_equal(jv_query_parse(&c, qs, strlen(qs), &q, err, sizeof(err)), -1);
    assert_string_equal(err, msg);
    jv_query_free(&q);
    jv_conf_free(&c);
}

static void test_query_parse(void **state)
{
    (void)state;
    jv_conf_t c;
    make_conf(&c);
    jv_query_t q;
    char err[128] = "";
    const char *qs = "mint=So1%2CEP%2C&min_liquidity=1000.5&sort=-vol&limit=50&offset=2&fields=address,name&&";
    assert_int_equal(jv_query_parse(&c, qs, strlen(qs), &q, err, sizeof(err)), 0);
    assert_int_equal(q.nm, 1);
    assert_int_equal(q.m[0].nvals, 2); /* the encoded commas split too; the empty value is dropped */
    assert_string_equal(q.m[0].vals[0], "So1");
    assert_string_equal(q.m[0].vals[1], "EP");
    int l = jv_conf_field(&c, "liquidity"), v = jv_conf_field(&c, "vol");
    assert_true(q.has_min[l] && q.min[l] == 1000.5 && !q.has_max[l]);
    assert_int_equal(q.sort_field, v);
    assert_true(q.sort_desc);
    assert_int_equal(q.limit, 50);
    assert_int_equal(q.offset, 2);
    assert_int_equal(q.nproject, 2);
    assert_string_equal(q.project[1], "name");
    jv_query_free(&q);
    /* defaults */
    assert_int_equal(jv_query_parse(&c, "", 0, &q, err, sizeof(err)), 0);
    assert_int_equal(q.limit, 100);
    assert_int_equal(q.sort_field, -1);
    assert_int_equal(q.nm, 0);
    jv_query_free(&q);
    assert_int_equal(jv_query_parse(&c, "sort=liquidity", 14, &q, err, sizeof(err)), 0);
    assert_false(q.sort_desc);
    jv_query_free(&q);
    jv_conf_free(&c);
}

static void test_query_refusals_name_the_parameter(void **state)
{
    (void)state;
    parse_bad("colour=red", "unknown parameter: colour");
    parse_bad("mint=", "mint: no value");
    parse_bad("mint=,,", "mint: no value");
    parse_bad("mint=a&mint=b", "mint: given twice");
    parse_bad("min_liquidity=abc", "min_liquidity: not a number");
    parse_bad("min_liquidity=", "min_liquidity: not a number");
    parse_bad("min_liquidity=nan", "min_liquidity: not a number");
    parse_bad("max_vol=1", "unknown parameter: max_vol"); /* vol has a min, not a max */
    parse_bad("min_name=1", "unknown parameter: min_name");
    parse_bad("limit=101", "limit: at most 100");
    parse_bad("limit=-1", "limit: not a whole number");
    parse_bad("limit=99999999999", "limit: not a whole number");
    parse_bad("offset=x", "offset: not a whole number");
    parse_bad("sort=name", "sort: unknown field name");
    parse_bad("sort=-", "sort: unknown field ");
    parse_bad("sort=vol&sort=liquidity", "sort: given twice");
    parse_bad("fields=", "fields: empty");
    parse_bad("fields=a%22b", "fields: bad field name a\"b");
    /* a name twice in fields= would give members with duplicate keys */
    parse_bad("fields=address,address", "fields: address given twice");
    parse_bad("fields=address,name,liquidity,name", "fields: name given twice");
    parse_bad("fields=address%2Caddress", "fields: address given twice"); /* an encoded comma splits too */
    parse_bad("fields=address&fields=name", "fields: given twice");
    parse_bad("fields=address&f%69elds=name", "fields: given twice"); /* keys compare decoded */
    parse_bad("min_liquidity=1&min_liquidity=2", "min_liquidity: given twice");
    parse_bad("max_liquidity=1&max_liquidity=1", "max_liquidity: given twice");
    parse_bad("limit=1&limit=1", "limit: given twice");
    parse_bad("offset=1&offset=2", "offset: given twice");
    parse_bad("sort=vol&sort=vol", "sort: given twice");
    parse_bad("address=p1&address=p1", "address: given twice");
}

static int append(void *ud, const char *p, size_t len)
{
    acc_t *a = ud;
    assert_true(a->n + len < sizeof(a->out));
    memcpy(a->out + a->n, p, len);
    a->n += len;
    a->out[a->n] = '\0';
    return 0;
}

static const char SRC[] = "[{\"address\":\"p0\",\"mint_x\":\"A\",\"mint_y\":\"B\",\"liquidity\":\"10.0\",\"vol\":5},"
                          "{\"address\":\"p1\",\"mint_x\":\"C\",\"mint_y\":\"A\",\"liquidity\":\"30\",\"vol\":5},"
                          "{\"address\":\"p2\",\"mint_x\":\"B\",\"mint_y\":\"D\",\"liquidity\":20,\"vol\":1},"
                          "{\"address\":\"p3\",\"mint_x\":\"A\",\"mint_y\":\"D\",\"name\":\"x\"},"
                          "{\"address\":\"p4\",\"mint_x\":\"E\",\"mint_y\":\"F\",\"liquidity\":40,\"vol\":9}]";

/* The addresses of an answer, in order ("p0,p3"), from `qs`. */
static void answer(const char *qs, const char *want)
{
    jv_conf_t c;
    make_conf(&c);
    char err[128] = "";
    jv_index_t *ix = jv_index_build(&c, SRC, strlen(SRC), err, sizeof(err));
    assert_non_null(ix);
    assert_int_equal(jv_index_members(ix), 5);
    jv_query_t q;
    assert_int_equal(jv_query_parse(&c, qs, strlen(qs), &q, err, sizeof(err)), 0);
    acc_t a = {{0}, 0};
    assert_int_equal(jv_answer(&c, ix, &q, append, &a, err, sizeof(err)), 0);
    char got[256] = "";
    size_t g = 0;
    for (const char *p = a.out; (p = strstr(p, "\"address\":\"")) != NULL; p += 11)
        g += (size_t)snprintf(got + g, sizeof(got) - g, "%s%.2s", g ? "," : "", p + 11);
    assert_string_equal(got, want);
    jv_query_free(&q);
    jv_index_free(ix);
    jv_conf_free(&c);
}

static void test_answers(void **state)
{
    (void)state;
    answer("", "p0,p1,p2,p3,p4");
    answer("mint=A", "p0,p1,p3");            /* any of mint_x, mint_y; source order */
    answer("mint=D,E", "p2,p3,p4");          /* any of the values */
    answer("mint=A&address=p1,p3", "p1,p3"); /* and across parameters */
    answer("mint=Z", "");
    answer("min_liquidity=20", "p1,p2,p4"); /* numeric strings count; members without it never match */
    answer("min_liquidity=15&max_liquidity=35", "p1,p2");
    answer("sort=-vol", "p4,p0,p1,p2,p3"); /* ties (5, 5) in source order, without the field last */
    answer("sort=vol", "p2,p0,p1,p4,p3");
    answer("mint=A&sort=-vol", "p0,p1,p3");
    answer("mint=A&sort=-liquidity", "p1,p0,p3");
    answer("sort=-liquidity&limit=2&offset=1", "p1,p2");
    answer("sort=-liquidity&min_vol=2", "p4,p1,p0");
    answer("limit=0", "");
    /* a value repeated in a match list counts once: each member at most once in the answer */
    answer("mint=A,A", "p0,p1,p3");
    answer("mint=A,B,A&address=p1,p1,p0", "p0,p1");
    answer("mint=A,D", "p0,p1,p2,p3"); /* p3 holds both (mint_x A, mint_y D): once */
}

static void test_answer_bytes_and_projection(void **state)
{
    (void)state;
    jv_conf_t c;
    make_conf(&c);
    char err[128] = "";
    jv_index_t *ix = jv_index_build(&c, SRC, strlen(SRC), err, sizeof(err));
    jv_query_t q;
    const char *qs = "address=p0,p2";
    assert_int_equal(jv_query_parse(&c, qs, strlen(qs), &q, err, sizeof(err)), 0);
    acc_t a = {{0}, 0};
    assert_int_equal(jv_answer(&c, ix, &q, append, &a, err, sizeof(err)), 0);
    assert_string_equal(a.out,
                        "[{\"address\":\"p0\",\"mint_x\":\"A\",\"mint_y\":\"B\",\"liquidity\":\"10.0\",\"vol\":5},"
                        "{\"address\":\"p2\",\"mint_x\":\"B\",\"mint_y\":\"D\",\"liquidity\":20,\"vol\":1}]");
    jv_query_free(&q);
    qs = "address=p0,p3&fields=liquidity,name,address";
    assert_int_equal(jv_query_parse(&c, qs, strlen(qs), &q, err, sizeof(err)), 0);
    a.n = 0;
    assert_int_equal(jv_answer(&c, ix, &q, append, &a, err, sizeof(err)), 0);
    assert_string_equal(a.out, "[{\"liquidity\":\"10.0\",\"address\":\"p0\"},{\"name\":\"x\",\"address\":\"p3\"}]");
    jv_query_free(&q);
    /* fields=a,a never reaches the answer: the parse refuses it (no object with a key twice) */
    qs = "address=p0&fields=address,address";
    assert_int_equal(jv_query_parse(&c, qs, strlen(qs), &q, err, sizeof(err)), -1);
    assert_string_equal(err, "fields: address given twice");
    jv_query_free(&q);
    qs = "fields=address,nope";
    assert_int_equal(jv_query_parse(&c, qs, strlen(qs), &q, err, sizeof(err)), 0);
    assert_int_equal(jv_answer(&c, ix, &q, append, &a, err, sizeof(err)), -1);
    assert_string_equal(err, "fields: unknown field nope");
    jv_query_free(&q);
    jv_index_free(ix);
    assert_null(jv_index_build(&c, "[1,", 3, err, sizeof(err)));
    assert_string_equal(err, "the source is not a JSON array (at byte 3)");
    jv_conf_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_members_and_fields),
        cmocka_unit_test(test_scan_refusals),
        cmocka_unit_test(test_scan_callback_stops),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_query_parse),
        cmocka_unit_test(test_query_refusals_name_the_parameter),
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_answer_bytes_and_projection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
