/* The auth plugin's API keys (lua-free-plugins/auth/apikeys.c): digests only, ids and tiers, file
 * format and its errors, 10,000 keys. */
#include "cmocka_prelude.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apikeys.h"

static void test_add_lookup(void **state)
{
    dca_apikeys_t *s = dca_apikeys_new();
    char err[256];
    assert_int_equal(dca_apikeys_add(s, "k-alpha", 7, "alice", "pro", err, sizeof(err)), 0);
    assert_int_equal(dca_apikeys_add(s, "k-beta", 6, NULL, NULL, err, sizeof(err)), 0);
    const dca_apikey_t *k = dca_apikeys_lookup(s, "k-alpha", 7);
    assert_non_null(k);
    assert_string_equal(k->id, "alice");
    assert_string_equal(k->tier, "pro");
    k = dca_apikeys_lookup(s, "k-beta", 6);
    assert_non_null(k);
    /* an id derived from the digest, never the key */
    assert_int_equal(strlen(k->id), 16);
    assert_memory_equal(k->id, "key-", 4);
    assert_null(strstr(k->id, "beta"));
    assert_string_equal(k->tier, "");
    /* prefixes, extensions, case, empty and over-long keys are unknown */
    assert_null(dca_apikeys_lookup(s, "k-alph", 6));
    assert_null(dca_apikeys_lookup(s, "k-alphaa", 8));
    assert_null(dca_apikeys_lookup(s, "K-ALPHA", 7));
    assert_null(dca_apikeys_lookup(s, "", 0));
    char big[DCA_APIKEY_MAX + 2];
    memset(big, 'k', sizeof(big));
    assert_null(dca_apikeys_lookup(s, big, sizeof(big)));
    /* the set holds no key bytes */
    assert_int_equal(dca_apikeys_count(s), 2);
    /* refusals */
    assert_int_equal(dca_apikeys_add(s, "k-alpha", 7, "other", NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "twice"));
    assert_int_equal(dca_apikeys_add(s, "k-gamma", 7, "alice", NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "two keys"));
    assert_int_equal(dca_apikeys_add(s, "", 0, NULL, NULL, err, sizeof(err)), -1);
    assert_int_equal(dca_apikeys_add(s, "a b", 3, NULL, NULL, err, sizeof(err)), -1);
    assert_int_equal(dca_apikeys_add(s, "k-delta", 7, "", NULL, err, sizeof(err)), -1);
    assert_int_equal(dca_apikeys_add(s, "k-delta", 7, "d", "t i e r", err, sizeof(err)), -1);
    assert_int_equal(dca_apikeys_count(s), 2);
    dca_apikeys_free(s);
    /* an empty set knows nothing */
    dca_apikeys_t *e = dca_apikeys_new();
    assert_null(dca_apikeys_lookup(e, "k-alpha", 7));
    dca_apikeys_free(e);
}

static char *tmpfile_with(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/dc_apikeys_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

static void test_file(void **state)
{
    char err[256];
    const char *path = tmpfile_with("# client keys\n"
                                    "\n"
                                    "key-one\n"
                                    "key-two   bob\n"
                                    "key-three\tcarol\tpro\r\n"
                                    "   # indented comment\n"
                                    "key-four dave free");
    dca_apikeys_t *s = dca_apikeys_new();
    assert_int_equal(dca_apikeys_load_file(s, path, err, sizeof(err)), 0);
    assert_int_equal(dca_apikeys_count(s), 4);
    assert_string_equal(dca_apikeys_lookup(s, "key-two", 7)->id, "bob");
    assert_string_equal(dca_apikeys_lookup(s, "key-three", 9)->tier, "pro");
    assert_string_equal(dca_apikeys_lookup(s, "key-four", 8)->tier, "free");
    assert_null(dca_apikeys_lookup(s, "#", 1));
    dca_apikeys_free(s);
    unlink(path);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"a\nb c d e\n", ":2: expected KEY [ID [TIER]], found 4 fields"},
        {"a x\nb x\n", ":2: the id \"x\" is given to two keys"},
        {"a\nb\na\n", ":3: the key of id"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        path = tmpfile_with(bad[i].text);
        s = dca_apikeys_new();
        assert_int_equal(dca_apikeys_load_file(s, path, err, sizeof(err)), -1);
        if (strstr(err, bad[i].want) == NULL || strncmp(err, path, strlen(path)) != 0)
            fail_msg("%s: got \"%s\"", bad[i].want, err);
        dca_apikeys_free(s);
        unlink(path);
    }
    s = dca_apikeys_new();
    assert_int_equal(dca_apikeys_load_file(s, "/nonexistent/keys.txt", err, sizeof(err)), -1);
    assert_string_equal(err, "/nonexistent/keys.txt: No such file or directory");
    dca_apikeys_free(s);
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* 10,000 keys from a file: all found with their ids, none of 10,000 others; load time printed */
static void test_ten_thousand(void **state)
{
    char path[] = "/tmp/dc_apikeys10k_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < 10000; i++)
        fprintf(f, "sk_live_%08d_%032x id%d %s\n", i, (unsigned)(i * 2654435761u), i, i % 3 ? "free" : "pro");
    fclose(f);
    dca_apikeys_t *s = dca_apikeys_new();
    char err[256];
    double t0 = mono();
    assert_int_equal(dca_apikeys_load_file(s, path, err, sizeof(err)), 0);
    double t1 = mono();
    assert_int_equal(dca_apikeys_count(s), 10000);
    char key[64], id[16];
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(key, sizeof(key), "sk_live_%08d_%032x", i, (unsigned)(i * 2654435761u));
        const dca_apikey_t *k = dca_apikeys_lookup(s, key, (size_t)n);
        assert_non_null(k);
        snprintf(id, sizeof(id), "id%d", i);
        assert_string_equal(k->id, id);
        assert_string_equal(k->tier, i % 3 ? "free" : "pro");
        key[9] ^= 1; /* one bit off */
        assert_null(dca_apikeys_lookup(s, key, (size_t)n));
    }
    double t2 = mono();
    printf("apikeys: 10000 keys loaded in %.1f ms, %.2f us per lookup pair (this build)\n", (t1 - t0) * 1e3,
           (t2 - t1) * 1e6 / 10000);
    dca_apikeys_free(s);
    unlink(path);
}

/* A file saved with a UTF-8 byte order mark and CRLF line ends (Windows editors): the first key is
 * the key, not BOM + key (it used to be refused forever while -t passed) */
static void test_bom_and_crlf(void **state)
{
    (void)state;
    char path[] = "/tmp/dc_apikeys_bom_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("\xef\xbb\xbfsk_first_0123456789 first\r\nsk_second_0123456789 second\r\n", f);
    fclose(f);
    dca_apikeys_t *s = dca_apikeys_new();
    char err[256];
    assert_int_equal(dca_apikeys_load_file(s, path, err, sizeof(err)), 0);
    assert_int_equal(dca_apikeys_count(s), 2);
    const dca_apikey_t *k = dca_apikeys_lookup(s, "sk_first_0123456789", 19);
    assert_non_null(k);
    assert_string_equal(k->id, "first");
    assert_null(dca_apikeys_lookup(s, "\xef\xbb\xbfsk_first_0123456789", 22));
    assert_non_null(dca_apikeys_lookup(s, "sk_second_0123456789", 20));
    dca_apikeys_free(s);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_lookup),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_ten_thousand),
        cmocka_unit_test(test_bom_and_crlf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
