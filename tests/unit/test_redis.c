/* Tests for redis/: a real redis-server on a free loopback port, started and stopped by each test
 * (SIGKILL / SIGSTOP / SIGCONT to make it die or hang on purpose), driven by a private uv loop with
 * a hard deadline on every wait. An atexit hook and a SIGALRM guard kill every server we started. */
#include "cmocka_prelude.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"
#include "redis/redis.h"

extern char **environ;

/* ---- server processes ---- */

#define MAX_PIDS 16
static volatile pid_t g_pids[MAX_PIDS];

static void kill_all(void)
{
    for (int i = 0; i < MAX_PIDS; i++)
        if (g_pids[i] > 0) {
            kill(g_pids[i], SIGKILL);
            waitpid(g_pids[i], NULL, 0);
            g_pids[i] = 0;
        }
}

static void on_alarm(int sig)
{
    static const char msg[] = "test_redis: global deadline hit, killing servers\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    for (int i = 0; i < MAX_PIDS; i++)
        if (g_pids[i] > 0)
            kill(g_pids[i], SIGKILL);
    _exit(1);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int can_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* Start redis-server on 127.0.0.1:port and wait until it accepts connections (3 s at most). */
static pid_t server_start(int port)
{
    char ports[16];
    snprintf(ports, sizeof(ports), "%d", port);
    char *argv[] = {
        "/usr/bin/redis-server", "--port", ports,        "--bind",  "127.0.0.1", "--save", "",  "--appendonly", "no",
        "--daemonize",           "no",     "--loglevel", "warning", "--dir",     "/tmp",   NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < MAX_PIDS; i++)
        if (g_pids[i] == 0) {
            g_pids[i] = pid;
            break;
        }
    uint64_t t0 = now_ms();
    while (!can_connect(port)) {
        assert_true(now_ms() - t0 < 3000);
        usleep(5000);
    }
    return pid;
}

/* Same over a unix socket only (--port 0). */
static pid_t server_start_unix(const char *path)
{
    char *argv[] = {"/usr/bin/redis-server",
                    "--port",
                    "0",
                    "--unixsocket",
                    (char *)path,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--loglevel",
                    "warning",
                    "--dir",
                    "/tmp",
                    NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < MAX_PIDS; i++)
        if (g_pids[i] == 0) {
            g_pids[i] = pid;
            break;
        }
    uint64_t t0 = now_ms();
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
        int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (ok)
            break;
        assert_true(now_ms() - t0 < 3000);
        usleep(5000);
    }
    return pid;
}

static void server_kill(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    for (int i = 0; i < MAX_PIDS; i++)
        if (g_pids[i] == pid)
            g_pids[i] = 0;
}

/* ---- fixture and loop driving ---- */

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t tick; /* keeps uv_run(ONCE) from blocking past our deadline */
    int port;
    pid_t pid;
    dc_redis_t *r;
    int closed;
    int ups, downs;
} fx_t;

static void on_tick(uv_timer_t *t) {}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    uv_loop_init(&fx->loop);
    uv_timer_init(&fx->loop, &fx->tick);
    uv_timer_start(&fx->tick, on_tick, 5, 5);
    fx->port = free_port();
    *state = fx;
    return 0;
}

/* Run the loop until *flag becomes non-zero or timeout_ms passes; returns the elapsed ms. */
static uint64_t run_until(fx_t *fx, volatile int *flag, uint64_t timeout_ms)
{
    uint64_t t0 = now_ms();
    while (!*flag && now_ms() - t0 < timeout_ms)
        uv_run(&fx->loop, UV_RUN_ONCE);
    return now_ms() - t0;
}

static void run_for(fx_t *fx, uint64_t ms)
{
    int never = 0;
    run_until(fx, &never, ms);
}

static void on_closed(void *data)
{
    ((fx_t *)data)->closed = 1;
}

static void on_state(void *data, bool up)
{
    fx_t *fx = data;
    if (up)
        fx->ups++;
    else
        fx->downs++;
}

static void close_handle(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    if (fx->r != NULL && !fx->closed) {
        dc_redis_close(fx->r, on_closed, fx);
        run_until(fx, &fx->closed, 2000);
    }
    if (fx->pid > 0)
        server_kill(fx->pid);
    uv_walk(&fx->loop, close_handle, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    uv_loop_close(&fx->loop);
    free(fx);
    return 0;
}

static dc_redis_t *client(fx_t *fx, uint64_t cmd_timeout_ms)
{
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", fx->port);
    dc_redis_opts_t o = {.url = url, .command_timeout_ms = cmd_timeout_ms};
    assert_int_equal(dc_redis_create(&fx->loop, &o, &fx->r), 0);
    dc_redis_set_state_cb(fx->r, on_state, fx);
    return fx->r;
}

static void wait_connected(fx_t *fx, uint64_t timeout_ms)
{
    uint64_t t0 = now_ms();
    while (!dc_redis_connected(fx->r) && now_ms() - t0 < timeout_ms)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_true(dc_redis_connected(fx->r));
}

/* ---- reply collection ---- */

static int g_in_submit; /* set around submissions: a callback must never see it */

typedef struct res {
    int done, err, type;
    long long integer;
    char str[64];
    size_t len;
} res_t;

static void on_res(void *data, int err, const redisReply *reply)
{
    res_t *res = data;
    assert_false(g_in_submit);
    assert_false(res->done);
    res->done = 1;
    res->err = err;
    if (reply != NULL) {
        res->type = reply->type;
        res->integer = reply->integer;
        if (reply->str != NULL) {
            res->len = reply->len < sizeof(res->str) ? reply->len : sizeof(res->str) - 1;
            memcpy(res->str, reply->str, res->len);
        }
    }
}

/* Count completions per error code into a shared tally. */
typedef struct tally {
    int n, ok, eio, eagain, etimedout, other;
    long long last_int;
    int in_order;
} tally_t;

static void on_tally(void *data, int err, const redisReply *reply)
{
    tally_t *t = data;
    assert_false(g_in_submit);
    t->n++;
    if (err == 0) {
        t->ok++;
        if (reply->type == REDIS_REPLY_INTEGER) {
            if (reply->integer != t->last_int + 1)
                t->in_order = 0;
            t->last_int = reply->integer;
        }
    } else if (err == DC_EIO) {
        t->eio++;
    } else if (err == DC_EAGAIN) {
        t->eagain++;
    } else if (err == DC_ETIMEDOUT) {
        t->etimedout++;
    } else {
        t->other++;
    }
}

#define SUBMIT(call)                                                                                                   \
    do {                                                                                                               \
        g_in_submit = 1;                                                                                               \
        assert_int_equal((call), 0);                                                                                   \
        g_in_submit = 0;                                                                                               \
    } while (0)

/* ---- tests ---- */

static void test_bad_url(void **state)
{
    fx_t *fx = *state;
    static const char *bad[] = {NULL,
                                "",
                                "http://127.0.0.1",
                                "redis://",
                                "redis://:6379",
                                "redis://h:0",
                                "redis://h:65536",
                                "redis://h:12x",
                                "redis://h:",
                                "redis://[::1",
                                "redis://[]:1",
                                "redis://[::1]x",
                                "redis://h/abc",
                                "redis://h/1/2",
                                "redis://u:p@h",
                                "redis://h:6379/0?x=1",
                                "unix://",
                                "unix://rel/path",
                                "unix:///p?db=x",
                                "unix:///p?foo=1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dc_redis_opts_t o = {.url = bad[i]};
        dc_redis_t *r = NULL;
        if (dc_redis_create(&fx->loop, &o, &r) != DC_EINVAL)
            fail_msg("url \"%s\" accepted", bad[i] ? bad[i] : "(null)");
    }
    static const char *good[] = {"redis://127.0.0.1:1/3", "redis://[::1]:1", "redis://localhost:1",
                                 "redis://127.0.0.1:1/", "unix:///nonexistent/dexcache.sock?db=2"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        dc_redis_opts_t o = {.url = good[i]};
        dc_redis_t *r = NULL;
        assert_int_equal(dc_redis_create(&fx->loop, &o, &r), 0);
        res_t res = {0};
        SUBMIT(dc_redis_command(r, on_res, &res, "PING"));
        run_until(fx, &res.done, 1000);
        assert_int_equal(res.err, DC_EAGAIN); /* nothing listens there */
        fx->closed = 0;
        dc_redis_close(r, on_closed, fx);
        run_until(fx, &fx->closed, 1000);
        assert_true(fx->closed);
    }
}

static void test_roundtrip_and_pipeline(void **state)
{
    fx_t *fx = *state;
    fx->pid = server_start(fx->port);
    dc_redis_t *r = client(fx, 0);
    wait_connected(fx, 2000);
    assert_int_equal(fx->ups, 1);

    res_t set = {0}, get = {0};
    SUBMIT(dc_redis_command(r, on_res, &set, "SET %s %b", "dc:k", "v\0x", (size_t)3));
    SUBMIT(dc_redis_command(r, on_res, &get, "GET %s", "dc:k"));
    run_until(fx, &get.done, 2000);
    assert_true(set.done && get.done);
    assert_int_equal(set.err, 0);
    assert_int_equal(set.type, REDIS_REPLY_STATUS);
    assert_int_equal(get.err, 0);
    assert_int_equal(get.type, REDIS_REPLY_STRING);
    assert_int_equal(get.len, 3);
    assert_memory_equal(get.str, "v\0x", 3);

    const char *argv[] = {"SET", "dc:argv", "bin\0ary"};
    const size_t lens[] = {3, 7, 7};
    res_t a = {0}, b = {0};
    SUBMIT(dc_redis_commandargv(r, on_res, &a, 3, argv, lens));
    SUBMIT(dc_redis_command(r, on_res, &b, "GET dc:argv"));
    run_until(fx, &b.done, 2000);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.str, "bin\0ary", 7);

    /* 1000 pipelined INCR in one loop turn, replies in order, then GET == 1000 */
    tally_t t = {.in_order = 1};
    res_t del = {0}, total = {0};
    SUBMIT(dc_redis_command(r, on_res, &del, "DEL dc:ctr"));
    for (int i = 0; i < 1000; i++)
        SUBMIT(dc_redis_command(r, on_tally, &t, "INCR dc:ctr"));
    SUBMIT(dc_redis_command(r, on_res, &total, "GET dc:ctr"));
    uint64_t ms = run_until(fx, &total.done, 5000);
    assert_int_equal(t.ok, 1000);
    assert_true(t.in_order);
    assert_int_equal(total.err, 0);
    assert_string_equal(total.str, "1000");
    print_message("    1000 pipelined INCR + GET: %llu ms\n", (unsigned long long)ms);

    /* a Redis error reply is err 0 with an error reply */
    res_t bad = {0};
    SUBMIT(dc_redis_command(r, on_res, &bad, "NOSUCHCOMMAND"));
    run_until(fx, &bad.done, 2000);
    assert_int_equal(bad.err, 0);
    assert_int_equal(bad.type, REDIS_REPLY_ERROR);
}

static void test_eval_noscript_fallback(void **state)
{
    fx_t *fx = *state;
    fx->pid = server_start(fx->port);
    dc_redis_t *r = client(fx, 0);
    dc_redis_script_t *s = dc_redis_script_register(r, "return redis.call('INCRBY', KEYS[1], ARGV[1])");
    assert_int_equal(strlen(dc_redis_script_sha(s)), 40);
    wait_connected(fx, 2000);

    const char *args[] = {"dc:ev", "5"};
    const size_t lens[] = {5, 1};
    res_t r1 = {0}, fl = {0}, r2 = {0}, r3 = {0}, ex = {0};
    SUBMIT(dc_redis_command(r, on_res, &ex, "SCRIPT EXISTS %s", dc_redis_script_sha(s)));
    SUBMIT(dc_redis_eval(r, s, on_res, &r1, 1, 1, args, lens));
    run_until(fx, &r1.done, 2000);
    assert_int_equal(ex.type, REDIS_REPLY_ARRAY); /* loaded on connect, queued before EVALSHA */
    assert_int_equal(r1.err, 0);
    assert_int_equal(r1.type, REDIS_REPLY_INTEGER);
    assert_int_equal(r1.integer, 5);

    SUBMIT(dc_redis_command(r, on_res, &fl, "SCRIPT FLUSH"));
    SUBMIT(dc_redis_eval(r, s, on_res, &r2, 1, 1, args, lens)); /* NOSCRIPT -> EVAL */
    SUBMIT(dc_redis_eval(r, s, on_res, &r3, 1, 1, args, lens)); /* EVAL cached it again */
    run_until(fx, &r3.done, 2000);
    assert_int_equal(r2.err, 0);
    assert_int_equal(r2.type, REDIS_REPLY_INTEGER);
    assert_int_equal(r2.integer, 10);
    assert_int_equal(r3.err, 0);
    assert_int_equal(r3.integer, 15);
}

/* INFO is longer than res_t keeps: check it with a dedicated callback. */
static void on_info(void *data, int err, const redisReply *reply)
{
    int *ok = data;
    *ok = err == 0 && reply->type == REDIS_REPLY_STRING && strstr(reply->str, "cmdstat_eval:calls=1,") != NULL ? 1 : -1;
}

static void test_eval_counts(void **state)
{
    fx_t *fx = *state;
    fx->pid = server_start(fx->port);
    dc_redis_t *r = client(fx, 0);
    dc_redis_script_t *s = dc_redis_script_register(r, "return #ARGV");
    wait_connected(fx, 2000);
    res_t fl = {0}, e1 = {0}, e2 = {0};
    int ok = 0;
    const char *args[] = {"a", "b"};
    const size_t lens[] = {1, 1};
    SUBMIT(dc_redis_command(r, on_res, &fl, "SCRIPT FLUSH"));
    SUBMIT(dc_redis_eval(r, s, on_res, &e1, 0, 2, args, lens));
    run_until(fx, &e1.done, 2000);
    /* sequential on purpose: an EVALSHA pipelined behind one that got NOSCRIPT gets NOSCRIPT too,
     * and each falls back on its own (the EVAL goes to the back of the pipeline) */
    SUBMIT(dc_redis_eval(r, s, on_res, &e2, 0, 2, args, lens));
    run_until(fx, &e2.done, 2000);
    SUBMIT(dc_redis_command(r, on_info, &ok, "INFO commandstats"));
    run_until(fx, &ok, 2000);
    assert_int_equal(e1.integer, 2);
    assert_int_equal(e2.integer, 2);
    assert_int_equal(ok, 1);
}

static void test_kill_and_restart(void **state)
{
    fx_t *fx = *state;
    fx->pid = server_start(fx->port);
    dc_redis_t *r = client(fx, 5000); /* long timeout: errors below must come from the drop */
    wait_connected(fx, 2000);

    tally_t blocked = {0};
    for (int i = 0; i < 20; i++)
        SUBMIT(dc_redis_command(r, on_tally, &blocked, "BLPOP dc:nolist%d 0", i));
    run_for(fx, 100);
    assert_int_equal(blocked.n, 0); /* really pending in Redis */

    server_kill(fx->pid);
    fx->pid = 0;
    uint64_t t0 = now_ms();
    while (blocked.n < 20 && now_ms() - t0 < 2000)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uint64_t drop_ms = now_ms() - t0;
    assert_int_equal(blocked.eio, 20);
    assert_true(drop_ms < 1000);
    assert_false(dc_redis_connected(r));
    assert_int_equal(fx->downs, 1);

    /* while down: fail fast, asynchronously */
    tally_t down = {0};
    t0 = now_ms();
    for (int i = 0; i < 10; i++)
        SUBMIT(dc_redis_command(r, on_tally, &down, "GET dc:k"));
    while (down.n < 10 && now_ms() - t0 < 1000)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uint64_t eagain_ms = now_ms() - t0;
    assert_int_equal(down.eagain, 10);
    assert_true(eagain_ms < 50);

    run_for(fx, 300); /* let the backoff grow a little */
    fx->pid = server_start(fx->port);
    t0 = now_ms();
    wait_connected(fx, 3000);
    uint64_t reconnect_ms = now_ms() - t0;
    assert_int_equal(fx->ups, 2);
    assert_int_equal(dc_redis_reconnects(r), 1);
    res_t ping = {0};
    SUBMIT(dc_redis_command(r, on_res, &ping, "PING"));
    run_until(fx, &ping.done, 1000);
    assert_int_equal(ping.err, 0);
    assert_string_equal(ping.str, "PONG");
    print_message("    kill -> all pending failed in %llu ms; fail-fast while down %llu ms; reconnected %llu ms "
                  "after restart\n",
                  (unsigned long long)drop_ms, (unsigned long long)eagain_ms, (unsigned long long)reconnect_ms);
}

typedef struct subs {
    int subscribed; /* (re)subscribe notices */
    int n;
    char last[64];
} subs_t;

static void on_msg(void *data, const char *msg, size_t len)
{
    subs_t *s = data;
    assert_false(g_in_submit);
    if (msg == NULL) {
        s->subscribed++;
        return;
    }
    s->n++;
    size_t l = len < sizeof(s->last) - 1 ? len : sizeof(s->last) - 1;
    memcpy(s->last, msg, l);
    s->last[l] = '\0';
}

/* A subscriber client gets every message published by another client, is told each time its
 * subscription is (re)established, and subscribes again by itself after Redis restarts. */
static void test_subscribe_survives_restart(void **state)
{
    fx_t *fx = *state;
    fx->pid = server_start(fx->port);
    dc_redis_t *sub = client(fx, 500);
    subs_t s = {0};
    dc_redis_subscribe(sub, "dc:bus", on_msg, &s);
    dc_redis_t *pub = NULL;
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", fx->port);
    dc_redis_opts_t o = {.url = url};
    assert_int_equal(dc_redis_create(&fx->loop, &o, &pub), 0);
    run_until(fx, &s.subscribed, 2000);
    assert_int_equal(s.subscribed, 1);
    while (!dc_redis_connected(pub))
        uv_run(&fx->loop, UV_RUN_ONCE);

    res_t r1 = {0};
    SUBMIT(dc_redis_command(pub, on_res, &r1, "PUBLISH dc:bus hello"));
    run_until(fx, &r1.done, 1000);
    assert_int_equal(r1.integer, 1); /* one subscriber received it */
    run_until(fx, &s.n, 1000);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.last, "hello");

    server_kill(fx->pid);
    run_for(fx, 200);
    fx->pid = server_start(fx->port);
    uint64_t t0 = now_ms();
    while (s.subscribed < 2 && now_ms() - t0 < 4000)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(s.subscribed, 2);
    while (!dc_redis_connected(pub) && now_ms() - t0 < 4000)
        uv_run(&fx->loop, UV_RUN_ONCE);
    res_t r2 = {0};
    SUBMIT(dc_redis_command(pub, on_res, &r2, "PUBLISH dc:bus %s", "again"));
    run_until(fx, &r2.done, 1000);
    assert_int_equal(r2.integer, 1);
    t0 = now_ms();
    while (s.n < 2 && now_ms() - t0 < 1000)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.last, "again");
    dc_redis_close(pub, NULL, NULL); /* freed by the loop run in teardown */
}

static void on_client_list(void *data, int err, const redisReply *reply)
{
    int *ok = data;
    *ok = err == 0 && reply->type == REDIS_REPLY_STRING && strstr(reply->str, " db=1 ") != NULL ? 1 : -1;
}

/* unix socket url with ?db=N: SELECT is sent on connect, before any user command */
static void test_unix_socket_db(void **state)
{
    fx_t *fx = *state;
    char path[64], url[96];
    snprintf(path, sizeof(path), "/tmp/dc_test_redis_%d.sock", (int)getpid());
    snprintf(url, sizeof(url), "unix://%s?db=1", path);
    fx->pid = server_start_unix(path);
    dc_redis_opts_t o = {.url = url};
    assert_int_equal(dc_redis_create(&fx->loop, &o, &fx->r), 0);
    wait_connected(fx, 2000);
    int ok = 0;
    res_t set = {0};
    SUBMIT(dc_redis_command(fx->r, on_res, &set, "SET dc:u 1"));
    SUBMIT(dc_redis_command(fx->r, on_client_list, &ok, "CLIENT LIST"));
    run_until(fx, &ok, 2000);
    assert_int_equal(set.err, 0);
    assert_int_equal(ok, 1);
    unlink(path);
}

/* a longer outage: attempts keep going with the delay capped at backoff_max_ms */
static void test_backoff_cap(void **state)
{
    fx_t *fx = *state;
    fx->pid = server_start(fx->port);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", fx->port);
    dc_redis_opts_t o = {.url = url, .backoff_min_ms = 10, .backoff_max_ms = 300};
    assert_int_equal(dc_redis_create(&fx->loop, &o, &fx->r), 0);
    wait_connected(fx, 2000);
    server_kill(fx->pid);
    fx->pid = 0;
    run_for(fx, 1500); /* 2^n growth passes the cap after a few attempts */
    assert_false(dc_redis_connected(fx->r));
    fx->pid = server_start(fx->port);
    uint64_t t0 = now_ms();
    wait_connected(fx, 1000);
    uint64_t ms = now_ms() - t0;
    assert_true(ms <= 300 + 100);
    print_message("    after a 1.5 s outage (backoff 10..300 ms): reconnected %llu ms after restart\n",
                  (unsigned long long)ms);
}

static void on_count_clients(void *data, int err, const redisReply *reply)
{
    int *n = data;
    *n = -1;
    if (err != 0 || reply->type != REDIS_REPLY_STRING)
        return;
    *n = 0;
    for (const char *p = reply->str; (p = strstr(p, "id=")) != NULL; p += 3)
        if (p == reply->str || p[-1] == '\n')
            (*n)++;
}

/* CLIENT LIST through r: the number of connections Redis has (-1 on failure). */
static int count_clients(fx_t *fx, dc_redis_t *r)
{
    int n = -2;
    if (dc_redis_command(r, on_count_clients, &n, "CLIENT LIST") != 0)
        return -1;
    uint64_t t0 = now_ms();
    while (n == -2 && now_ms() - t0 < 1000)
        uv_run(&fx->loop, UV_RUN_ONCE);
    return n;
}

/* A frozen Redis (SIGSTOP: TCP connects still succeed from the listen backlog, nothing answers) is
 * reported down from the first command timeout until it answers again, and never up in between,
 * even though the reconnects it triggers all "connect"; commands fail fast meanwhile; after
 * SIGCONT the client is up again quickly and Redis holds no leftover connections of ours. */
static void test_sigstop_timeouts(void **state)
{
    fx_t *fx = *state;
    fx->pid = server_start(fx->port);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", fx->port);
    dc_redis_opts_t o = {.url = url, .command_timeout_ms = 500, .backoff_max_ms = 1000};
    assert_int_equal(dc_redis_create(&fx->loop, &o, &fx->r), 0);
    dc_redis_t *r = fx->r;
    dc_redis_set_state_cb(r, on_state, fx);
    dc_redis_script_register(r, "return 1");
    wait_connected(fx, 2000);
    assert_int_equal(fx->ups, 1);
    int before = count_clients(fx, r);
    assert_int_equal(before, 1);

    kill(fx->pid, SIGSTOP);
    res_t one = {0};
    uint64_t t0 = now_ms();
    SUBMIT(dc_redis_command(r, on_res, &one, "PING"));
    run_until(fx, &one.done, 2000);
    uint64_t first_ms = now_ms() - t0;
    assert_int_equal(one.err, DC_ETIMEDOUT);
    assert_true(first_ms >= 480 && first_ms <= 700);
    assert_false(dc_redis_connected(r));
    assert_int_equal(fx->downs, 1);

    /* reported down: fail fast instead of waiting for the timeout */
    tally_t more = {0};
    t0 = now_ms();
    SUBMIT(dc_redis_command(r, on_tally, &more, "PING"));
    SUBMIT(dc_redis_command(r, on_tally, &more, "PING"));
    while (more.n < 2 && now_ms() - t0 < 2000)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uint64_t more_ms = now_ms() - t0;
    assert_int_equal(more.eagain, 2);
    assert_true(more_ms < 50);

    /* 4 s more of freeze: probes time out, the connection is dropped, reconnects connect (backlog)
     * but their setup never answers: never up */
    t0 = now_ms();
    int up_samples = 0;
    while (now_ms() - t0 < 4000) {
        run_for(fx, 10);
        up_samples += dc_redis_connected(r);
    }
    assert_int_equal(up_samples, 0);
    assert_int_equal(fx->ups, 1);
    assert_int_equal(fx->downs, 1);
    assert_int_equal(dc_redis_reconnects(r), 0);

    kill(fx->pid, SIGCONT);
    t0 = now_ms();
    wait_connected(fx, 3000);
    uint64_t recover_ms = now_ms() - t0;
    assert_true(recover_ms < 1500); /* backoff capped at 1 s, then one setup round trip */
    assert_int_equal(fx->ups, 2);
    assert_int_equal(dc_redis_reconnects(r), 1);
    res_t ok = {0};
    SUBMIT(dc_redis_command(r, on_res, &ok, "PING"));
    run_until(fx, &ok.done, 1000);
    assert_int_equal(ok.err, 0);
    assert_string_equal(ok.str, "PONG");
    /* the abandoned attempts were closed: Redis drops them once it reads their EOF */
    int after = -1;
    t0 = now_ms();
    while (now_ms() - t0 < 2000 && (after = count_clients(fx, r)) != before)
        run_for(fx, 20);
    assert_int_equal(after, before);
    print_message("    SIGSTOP: first timeout after %llu ms (timeout 500), then fail-fast in %llu ms, never up in "
                  "4 s of freeze; SIGCONT -> up after %llu ms; clients %d before, %d after\n",
                  (unsigned long long)first_ms, (unsigned long long)more_ms, (unsigned long long)recover_ms, before,
                  after);
}

/* Without any traffic, an idle client notices a frozen Redis through its keepalive probe. */
static void test_sigstop_idle_noticed(void **state)
{
    fx_t *fx = *state;
    fx->pid = server_start(fx->port);
    dc_redis_t *r = client(fx, 300);
    wait_connected(fx, 2000);
    kill(fx->pid, SIGSTOP);
    uint64_t t0 = now_ms();
    while (dc_redis_connected(r) && now_ms() - t0 < 3000)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uint64_t ms = now_ms() - t0;
    assert_false(dc_redis_connected(r));
    assert_int_equal(fx->downs, 1);
    assert_true(ms <= DC_REDIS_KEEPALIVE_MS * 5 / 4 + 300 + 300); /* checked every quarter interval */
    kill(fx->pid, SIGCONT);
    wait_connected(fx, 3000);
    assert_int_equal(fx->ups, 2);
    print_message("    idle client: frozen Redis reported down after %llu ms (keepalive %d ms, timeout 300)\n",
                  (unsigned long long)ms, DC_REDIS_KEEPALIVE_MS);
}

/* A connection whose setup fails (here SELECT of a db that does not exist) is never up. */
static void test_setup_error_never_up(void **state)
{
    fx_t *fx = *state;
    fx->pid = server_start(fx->port);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/99999", fx->port);
    dc_redis_opts_t o = {.url = url, .backoff_max_ms = 100};
    assert_int_equal(dc_redis_create(&fx->loop, &o, &fx->r), 0);
    dc_redis_set_state_cb(fx->r, on_state, fx);
    int up_samples = 0;
    uint64_t t0 = now_ms();
    while (now_ms() - t0 < 1000) {
        run_for(fx, 10);
        up_samples += dc_redis_connected(fx->r);
    }
    assert_int_equal(up_samples, 0);
    assert_int_equal(fx->ups, 0);
    res_t res = {0};
    SUBMIT(dc_redis_command(fx->r, on_res, &res, "PING"));
    run_until(fx, &res.done, 1000);
    assert_int_equal(res.err, DC_EAGAIN);
}

/* close with commands in Redis: each completes once with DC_EIO, then on_closed runs */
static void test_close_with_pending(void **state)
{
    fx_t *fx = *state;
    fx->pid = server_start(fx->port);
    dc_redis_t *r = client(fx, 5000);
    wait_connected(fx, 2000);
    tally_t t = {0};
    for (int i = 0; i < 5; i++)
        SUBMIT(dc_redis_command(r, on_tally, &t, "BLPOP dc:nolist 0"));
    run_for(fx, 50);
    assert_int_equal(t.n, 0);
    dc_redis_close(r, on_closed, fx);
    assert_int_equal(t.n, 0); /* asynchronous */
    run_until(fx, &fx->closed, 1000);
    assert_true(fx->closed);
    assert_int_equal(t.eio, 5);
    assert_int_equal(t.n, 5);
}

/* close from inside a reply callback */
static void on_close_here(void *data, int err, const redisReply *reply)
{
    fx_t *fx = data;
    dc_redis_close(fx->r, on_closed, fx);
}

static void test_close_inside_callback(void **state)
{
    fx_t *fx = *state;
    fx->pid = server_start(fx->port);
    dc_redis_t *r = client(fx, 0);
    wait_connected(fx, 2000);
    tally_t t = {0};
    SUBMIT(dc_redis_command(r, on_close_here, fx, "PING"));
    SUBMIT(dc_redis_command(r, on_tally, &t, "BLPOP dc:nolist 0"));
    run_until(fx, &fx->closed, 2000);
    assert_true(fx->closed);
    assert_int_equal(t.eio, 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    atexit(kill_all);
    alarm(90);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_and_pipeline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eval_noscript_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eval_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_socket_db, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backoff_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigstop_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigstop_idle_noticed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setup_error_never_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_inside_callback, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    kill_all();
    return rc;
}
