/* Unit tests for cache/vary.c: Vary name lists, request value normalisation header by header, and
 * secondary keys (absent vs empty, segments that cannot be forged, the primary key found back). */
#include "cmocka_prelude.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/vary.h"

static size_t names1(const char *v, char *out, unsigned *flags)
{
    const char *vals[1] = {v};
    size_t lens[1] = {strlen(v)};
    *flags = 0;
    return dc_vary_names_parse(vals, lens, 1, out, DC_VARY_NAMES_MAX + 1, flags);
}

static void test_names(void **state)
{
    (void)state;
    char out[DC_VARY_NAMES_MAX + 1];
    unsigned f;
    assert_int_equal(names1("Accept-Language", out, &f), 15);
    assert_string_equal(out, "accept-language");
    assert_int_equal(f, 0);
    names1("X-B, accept-language ,Accept-Encoding,x-b,,  X-A", out, &f);
    assert_string_equal(out, "accept-language,x-a,x-b");
    assert_int_equal(f, DC_VARY_ENCODING);
    assert_int_equal(dc_vary_names_count(out, strlen(out)), 3);
    assert_int_equal(names1("Accept-Encoding", out, &f), 0);
    assert_int_equal(dc_vary_names_count(out, 0), 0);
    names1("accept-language, *", out, &f);
    assert_true(f & DC_VARY_STAR);
    names1("accept language", out, &f);
    assert_true(f & DC_VARY_INVALID);
    names1("a,b,c,d,e,f,g,h,i", out, &f);
    assert_true(f & DC_VARY_TOO_MANY);
    names1("a,b,c,d,e,f,g,h,a", out, &f);
    assert_int_equal(f, 0);

    /* several field lines are one list */
    const char *vals[2] = {"X-Two", "x-one, X-TWO"};
    size_t lens[2] = {5, 12};
    f = 0;
    dc_vary_names_parse(vals, lens, 2, out, sizeof(out), &f);
    assert_string_equal(out, "x-one,x-two");
}

static void norm(const char *name, const char *const *vals, size_t n, const char *want)
{
    size_t lens[4];
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(vals[i]);
    char out[256];
    size_t l = dc_vary_value_normalize(name, strlen(name), vals, lens, n, out, sizeof(out));
    assert_true(l != (size_t)-1);
    out[l] = '\0';
    if (strcmp(out, want) != 0)
        print_error("%s: got \"%s\", want \"%s\"\n", name, out, want);
    assert_string_equal(out, want);
}

static void norm1(const char *name, const char *v, const char *want)
{
    norm(name, &v, 1, want);
}

static void test_normalize(void **state)
{
    (void)state;
    /* Accept-Language: whitespace around elements and parameters, case; order kept */
    norm1("accept-language", "en,fr", "en, fr");
    norm1("accept-language", "  en ,  fr  ", "en, fr");
    norm1("accept-language", "EN-us;q=0.8 , fr ; q = 0.5", "en-us;q=0.8, fr;q=0.5");
    norm1("accept-language", "fr, en", "fr, en");
    norm1("accept-language", "en,,fr,", "en, fr");
    norm1("accept-language", "", "");
    norm1("accept-language", "   ", "");
    /* several lines are one list */
    const char *two[2] = {"en", " fr "};
    norm("accept-language", two, 2, "en, fr");
    /* Accept keeps case and quoted strings */
    norm1("accept", "Text/HTML ;level=1,application/json; x=\"A , B\"",
          "Text/HTML;level=1, application/json;x=\"A , B\"");
    /* unknown headers: only outer whitespace; lines joined with ", " */
    norm1("x-tenant", "  A  b ", "A  b");
    const char *xs[2] = {"a,b", "c"};
    norm("x-tenant", xs, 2, "a,b, c");
    /* overflow */
    const char *v = "en, fr";
    size_t l = 6;
    char small[3];
    assert_int_equal(dc_vary_value_normalize("accept-language", 15, &v, &l, 1, small, sizeof(small)), (size_t)-1);
}

/* A request as a list of (name, value) lines for the getter. */
typedef struct req {
    const char *const *lines; /* "name", "value", ... NULL */
} req_t;

static size_t get(void *ctx, const char *name, size_t nlen, const char **vals, size_t *lens, size_t max)
{
    req_t *r = ctx;
    size_t n = 0;
    for (size_t i = 0; r->lines[i] != NULL; i += 2) {
        if (strlen(r->lines[i]) == nlen && strncasecmp(r->lines[i], name, nlen) == 0) {
            if (n < max) {
                vals[n] = r->lines[i + 1];
                lens[n] = strlen(r->lines[i + 1]);
            }
            n++;
        }
    }
    return n;
}

static void key(const char *names, const char *const *lines, const char *want)
{
    req_t r = {lines};
    char out[512];
    long n = dc_vary_key_build("GET /a?x=1", 10, names, strlen(names), get, &r, out, sizeof(out));
    assert_true(n > 0);
    if (strcmp(out, want) != 0)
        print_error("got \"%s\", want \"%s\"\n", out, want);
    assert_string_equal(out, want);
    assert_int_equal(dc_vary_primary_len(out, (size_t)n), 10);
}

static void test_key(void **state)
{
    (void)state;
    const char *en[] = {"Accept-Language", "en,fr", NULL};
    const char *en2[] = {"accept-language", " en , fr", NULL};
    const char *en3[] = {"accept-language", "en", "Accept-Language", "fr", NULL};
    const char *none[] = {NULL};
    const char *empty[] = {"accept-language", "", NULL};
    const char *spaced[] = {"x-t", "a b", "accept-language", "de", NULL};
    key("accept-language", en, "GET /a?x=1 {vary} accept-language:en,%20fr");
    key("accept-language", en2, "GET /a?x=1 {vary} accept-language:en,%20fr");
    key("accept-language", en3, "GET /a?x=1 {vary} accept-language:en,%20fr");
    key("accept-language", none, "GET /a?x=1 {vary} accept-language");
    key("accept-language", empty, "GET /a?x=1 {vary} accept-language:");
    key("accept-language,x-t", spaced, "GET /a?x=1 {vary} accept-language:de x-t:a%20b");
    key("accept-language,x-t", none, "GET /a?x=1 {vary} accept-language x-t");

    /* a value cannot forge another segment */
    const char *forge[] = {"x-t", "a x-u:b", NULL};
    key("x-t", forge, "GET /a?x=1 {vary} x-t:a%20x-u:b");

    /* too small a buffer, too long a value */
    req_t r = {en};
    char small[16];
    assert_int_equal(dc_vary_key_build("GET /a?x=1", 10, "accept-language", 15, get, &r, small, sizeof(small)), -1);
    char *big = malloc(DC_VARY_VALUE_MAX + 10);
    memset(big, 'a', DC_VARY_VALUE_MAX + 9);
    big[DC_VARY_VALUE_MAX + 9] = '\0';
    const char *bigl[] = {"x-t", big, NULL};
    req_t rb = {bigl};
    char *out = malloc(4 * DC_VARY_VALUE_MAX);
    assert_int_equal(dc_vary_key_build("GET /a", 6, "x-t", 3, get, &rb, out, 4 * DC_VARY_VALUE_MAX), -1);
    free(out);
    free(big);
}

static void test_primary_and_hash(void **state)
{
    (void)state;
    assert_int_equal(dc_vary_primary_len("GET /a x-k:v", 12), 12);
    assert_int_equal(dc_vary_primary_len("GET /a x-k:v {vary} a:b", 23), 12);
    uint64_t h = dc_vary_hash(0x1234567890abcdefull, 0xfedcba0987654321ull);
    assert_true((h & 0xff) == 0xef);
    assert_true((h & ~0xffull) == (0xfedcba0987654321ull & ~0xffull));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_primary_and_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
