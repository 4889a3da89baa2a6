/*
 * dc_redis_t: URL parsing, command records, timeouts, scripts and close. The connection itself
 * (event glue, reconnect) is in redis_conn.c; the record life cycle is described in
 * redis_private.h.
 */
#include "redis/redis_private.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/log.h"
#include "core/time.h"

#include <mbedtls/sha1.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- url ---- */

/* Parse exactly [s, s+n) as a decimal number <= max. */
static int parse_uint(const char *s, size_t n, long max, long *out)
{
    uint64_t v;
    if (n > 10 || !dc_parse_u64(s, n, &v) || v > (uint64_t)max)
        return DC_EINVAL;
    *out = (long)v;
    return 0;
}

/* redis://host[:port][/db] with host a name, IPv4 or [IPv6]; unix:///abs/path[?db=N].
 * No credentials, no other query parameters. */
static int parse_url(dc_redis_t *r, const char *url)
{
    long v;
    r->port = 6379;
    r->db = 0;
    if (url == NULL)
        return DC_EINVAL;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7, *q = strchr(p, '?');
        size_t plen = q != NULL ? (size_t)(q - p) : strlen(p);
        if (plen < 2 || p[0] != '/')
            return DC_EINVAL;
        if (q != NULL) {
            if (strncmp(q, "?db=", 4) != 0 || parse_uint(q + 4, strlen(q + 4), 1 << 20, &v) != 0)
                return DC_EINVAL;
            r->db = (int)v;
        }
        r->path = dc_strndup(p, plen);
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return DC_EINVAL;
    const char *p = url + 8, *hend, *rest;
    if (strpbrk(p, "@?#") != NULL)
        return DC_EINVAL;
    if (*p == '[') {
        hend = strchr(p, ']');
        if (hend == NULL || hend == p + 1)
            return DC_EINVAL;
        r->host = dc_strndup(p + 1, (size_t)(hend - p - 1));
        rest = hend + 1;
    } else {
        hend = p + strcspn(p, ":/");
        if (hend == p)
            return DC_EINVAL;
        r->host = dc_strndup(p, (size_t)(hend - p));
        rest = hend;
    }
    if (*rest == ':') {
        size_t n = strcspn(rest + 1, "/");
        if (parse_uint(rest + 1, n, 65535, &v) != 0 || v == 0)
            return DC_EINVAL;
        r->port = (int)v;
        rest += 1 + n;
    }
    if (*rest == '/') {
        if (rest[1] != '\0') {
            if (parse_uint(rest + 1, strlen(rest + 1), 1 << 20, &v) != 0)
                return DC_EINVAL;
            r->db = (int)v;
        }
    } else if (*rest != '\0') {
        return DC_EINVAL;
    }
    return 0;
}

/* ---- command records ---- */

static dc_redis_cmd_t *cmd_new(dc_redis_t *r, dc_redis_cb cb, void *data)
{
    dc_redis_cmd_t *c = dc_calloc(1, sizeof(*c));
    c->magic = DC_REDIS_CMD_MAGIC;
    c->r = r;
    c->cb = cb;
    c->data = data;
    c->kind = DC_REDIS_CMD_USER;
    return c;
}

/* A record the client sends for itself; its callback gets the record as data. */
static dc_redis_cmd_t *cmd_new_internal(dc_redis_t *r, dc_redis_cmd_kind_t kind, dc_redis_cb cb, const char *what)
{
    dc_redis_cmd_t *c = cmd_new(r, cb, NULL);
    c->data = c;
    c->kind = kind;
    c->what = what;
    c->gen = r->conn != NULL ? r->conn->gen : 0;
    return c;
}

/* The connection exists and takes commands (setup, probes, subscriptions). */
static bool conn_open(const dc_redis_t *r)
{
    const dc_redis_conn_t *conn = r->conn;
    return conn != NULL && conn->ac != NULL && (conn->state == DC_REDIS_CONN_SETUP || conn->state == DC_REDIS_CONN_UP);
}

/* Set up, answering, and nothing overdue: what callers may rely on (dc_redis_connected). */
/* The oldest pending command (the first deadline), or NULL. */
static dc_redis_cmd_t *pend_first(const dc_redis_t *r)
{
    dc_list_node_t *n = dc_list_first(&r->pending);
    return n != NULL ? dc_container_of(n, dc_redis_cmd_t, link) : NULL;
}

static bool usable(const dc_redis_t *r)
{
    const dc_redis_conn_t *conn = r->conn;
    if (conn == NULL || conn->ac == NULL || conn->state != DC_REDIS_CONN_UP || r->stalled)
        return false;
    /* the command timer expires overdue records, but it may not have run yet on a busy loop */
    dc_redis_cmd_t *oldest = pend_first(r);
    return oldest == NULL || oldest->deadline > uv_now(r->loop);
}

void dc__redis_report_state(dc_redis_t *r)
{
    bool up = r->conn != NULL && r->conn->state == DC_REDIS_CONN_UP && !r->stalled;
    if (up == r->reported_up || r->closing)
        return;
    r->reported_up = up;
    if (r->state_cb != NULL)
        r->state_cb(r->state_data, up);
}

static void cmd_free_if_released(dc_redis_cmd_t *c)
{
    if (!c->done || c->in_hiredis)
        return;
    c->magic = 0;
    free(c->args); /* one block: args, lens and the bytes */
    free(c);
}

static void pend_unlink(dc_redis_cmd_t *c)
{
    if (!c->in_pending)
        return;
    dc_list_remove(&c->link);
    c->in_pending = false;
}

/* Run the user callback once; the record lives on while hiredis still holds it. */
static void cmd_complete(dc_redis_cmd_t *c, int err, const redisReply *reply)
{
    DC_CHECK_MAGIC(c, DC_REDIS_CMD_MAGIC);
    DC_ASSERT(!c->done);
    pend_unlink(c);
    c->done = true;
    c->cb(c->data, err, reply);
    cmd_free_if_released(c);
}

static void on_cmd_timer(uv_timer_t *t);
static void send_probe(dc_redis_t *r);

static void arm_cmd_timer(dc_redis_t *r)
{
    dc_redis_cmd_t *oldest = pend_first(r);
    if (oldest == NULL || r->torn_down) {
        uv_timer_stop(&r->cmd_timer);
        return;
    }
    uint64_t now = uv_now(r->loop), d = oldest->deadline;
    uv_timer_start(&r->cmd_timer, on_cmd_timer, d > now ? d - now : 0, 0);
}

/* Expire every command past its deadline (oldest first: deadlines grow with submission order since
 * the timeout is the same for all), and drop a connection that stopped answering. */
static void on_cmd_timer(uv_timer_t *t)
{
    dc_redis_t *r = t->data;
    uint64_t now = uv_now(r->loop);
    dc_redis_cmd_t *oldest;
    while ((oldest = pend_first(r)) != NULL && oldest->deadline <= now) {
        r->consecutive_timeouts++;
        dc_redis_note_error("%s: no reply within %llu ms", oldest->what != NULL ? oldest->what : "command",
                            (unsigned long long)r->o.command_timeout_ms);
        cmd_complete(oldest, DC_ETIMEDOUT, NULL);
    }
    bool up = r->conn != NULL && r->conn->state == DC_REDIS_CONN_UP && !r->closing;
    if (up && r->consecutive_timeouts > 0 && !r->stalled) {
        /* Redis may be frozen (SIGSTOP, swapping, a slow script): stop offering it to callers until it
         * answers again; what is already in flight times out on its own */
        dc_log_warn("redis: no reply within %llu ms; reported down until Redis answers",
                    (unsigned long long)r->o.command_timeout_ms);
        r->stalled = true;
        dc__redis_report_state(r);
    }
    if (up && r->consecutive_timeouts >= DC_REDIS_DEAD_AFTER_TIMEOUTS && r->conn != NULL) {
        dc_log_warn("redis: %u consecutive command timeouts, reconnecting", r->consecutive_timeouts);
        r->consecutive_timeouts = 0;
        dc__redis_conn_drop(r->conn);
    } else if (r->stalled && r->conn != NULL) {
        send_probe(r);
    }
    arm_cmd_timer(r);
}

static void on_idle(uv_idle_t *h);

/* Complete c with err on the next loop turn (keeps "never from inside the submitting call"). */
static void defer_fail(dc_redis_t *r, dc_redis_cmd_t *c, int err)
{
    c->err = err;
    dc_list_push_back(&r->deferred, &c->link);
    uv_idle_start(&r->idle, on_idle);
}

/* Hand a formatted command (buf, len; consumed) to hiredis, or fail it fast: a user command needs
 * a usable connection, the client's own commands an open one. */
static void submit(dc_redis_t *r, dc_redis_cmd_t *c, char *buf, int len)
{
    dc_redis_conn_t *conn = r->conn;
    bool ok = c->kind == DC_REDIS_CMD_USER ? usable(r) : conn_open(r);
    if (!ok || r->inflight >= DC_REDIS_MAX_INFLIGHT ||
        redisAsyncFormattedCommand(conn->ac, dc__redis_on_reply, c, buf, (size_t)len) != REDIS_OK) {
        redisFreeCommand(buf);
        defer_fail(r, c, DC_EAGAIN);
        return;
    }
    redisFreeCommand(buf);
    c->in_hiredis = true;
    r->inflight++;
    c->deadline = uv_now(r->loop) + r->o.command_timeout_ms;
    c->in_pending = true;
    dc_list_push_back(&r->pending, &c->link);
    if (!uv_is_active((uv_handle_t *)&r->cmd_timer))
        arm_cmd_timer(r);
}

/* Re-send an EVALSHA that got NOSCRIPT as EVAL (from inside a reply callback: allowed by hiredis). */
static int resend_as_eval(redisAsyncContext *ac, dc_redis_cmd_t *c)
{
    int argc = 3 + c->nkeys + c->nargs;
    const char **argv = dc_malloc(sizeof(*argv) * (size_t)argc);
    size_t *lens = dc_malloc(sizeof(*lens) * (size_t)argc);
    char nk[16];
    argv[0] = "EVAL";
    lens[0] = 4;
    argv[1] = c->script->src;
    lens[1] = c->script->len;
    lens[2] = (size_t)snprintf(nk, sizeof(nk), "%d", c->nkeys);
    argv[2] = nk;
    for (int i = 0; i < c->nkeys + c->nargs; i++) {
        argv[3 + i] = c->args[i];
        lens[3 + i] = c->lens[i];
    }
    int rc = redisAsyncCommandArgv(ac, dc__redis_on_reply, c, argc, argv, lens);
    free(argv);
    free(lens);
    return rc == REDIS_OK ? 0 : DC_EIO;
}

void dc__redis_on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    dc_redis_cmd_t *c = privdata;
    DC_CHECK_MAGIC(c, DC_REDIS_CMD_MAGIC);
    dc_redis_t *r = c->r;
    const redisReply *reply = reply_;
    c->in_hiredis = false;
    r->inflight--;
    if (reply == NULL) {
        /* the context is being freed: connection lost, dropped by us, or client closing */
        dc__redis_conn_lost(ac->data);
        if (!c->done)
            cmd_complete(c, DC_EIO, NULL);
        else
            cmd_free_if_released(c);
        return;
    }
    r->consecutive_timeouts = 0; /* Redis answers, even if late */
    r->last_reply_ms = uv_now(r->loop);
    if (r->stalled) {
        dc_log_info("redis: answering again");
        r->stalled = false;
        dc__redis_report_state(r); /* before the callback below, which may send again */
    }
    if (c->done) {
        cmd_free_if_released(c);
        return;
    }
    if (c->script != NULL && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        if (resend_as_eval(ac, c) == 0) {
            c->in_hiredis = true;
            r->inflight++;
            return;
        }
        cmd_complete(c, DC_EIO, NULL);
        return;
    }
    cmd_complete(c, 0, reply);
}

/* ---- commands the client sends for itself: setup, probes ---- */

static void on_internal_reply(void *data, int err, const redisReply *reply)
{
    const dc_redis_cmd_t *c = data;
    if (err != 0)
        dc_log_warn("redis: %s failed: %s", c->what, dc_strerror(err));
    else if (reply->type == REDIS_REPLY_ERROR)
        dc_log_error("redis: %s failed: %s", c->what, reply->str);
}

static void on_idle(uv_idle_t *h);

/* Drop r's connection of generation gen on the next loop turn (callers may be inside hiredis). */
static void request_drop(dc_redis_t *r, unsigned gen)
{
    r->drop_requested = true;
    r->drop_gen = gen;
    uv_idle_start(&r->idle, on_idle);
}

/* Every setup command answered: the connection is usable. */
static void conn_ready(dc_redis_t *r, dc_redis_conn_t *conn)
{
    conn->state = DC_REDIS_CONN_UP;
    r->attempt = r->protocol_strikes; /* only now: a connect that leads nowhere must keep backing off */
    r->up_since_ms = uv_now(r->loop);
    r->consecutive_timeouts = 0;
    r->last_reply_ms = uv_now(r->loop);
    if (r->ever_up)
        r->reconnects++;
    r->ever_up = true;
    dc_log_info("redis: connected");
    dc__redis_report_state(r);
}

static void on_setup_reply(void *data, int err, const redisReply *reply)
{
    dc_redis_cmd_t *c = data;
    dc_redis_t *r = c->r;
    dc_redis_conn_t *conn = r->conn;
    if (conn == NULL || conn->gen != c->gen || conn->state != DC_REDIS_CONN_SETUP ||
        (r->drop_requested && r->drop_gen == conn->gen))
        return; /* that connection is gone or already failed */
    if (err != 0 || reply->type == REDIS_REPLY_ERROR) {
        dc_log_warn("redis: %s failed while setting up the connection (%s), reconnecting", c->what,
                    err != 0 ? dc_strerror(err) : reply->str);
        request_drop(r, conn->gen);
        return;
    }
    DC_ASSERT(conn->setup_left > 0);
    if (--conn->setup_left == 0)
        conn_ready(r, conn);
}

static void on_probe_reply(void *data, int err, const redisReply *reply)
{
    dc_redis_cmd_t *c = data;
    c->r->probe_pending = false; /* a reply already cleared the stall in dc__redis_on_reply */
}

/* Check that Redis answers: one PING in flight at most. */
static void send_probe(dc_redis_t *r)
{
    if (r->probe_pending || r->closing || r->conn == NULL || r->conn->state != DC_REDIS_CONN_UP)
        return;
    char *buf;
    int len = redisFormatCommand(&buf, "PING");
    DC_ASSERT(len > 0);
    r->probe_pending = true;
    submit(r, cmd_new_internal(r, DC_REDIS_CMD_PROBE, on_probe_reply, "PING"), buf, len);
}

/* An idle command connection is probed, so that a frozen Redis is reported without traffic.
 * Subscriber connections are not: a PING reply could not be told from a message there. */
static void on_keepalive(uv_timer_t *t)
{
    dc_redis_t *r = t->data;
    if (r->subs == NULL && !r->stalled && uv_now(r->loop) - r->last_reply_ms >= DC_REDIS_KEEPALIVE_MS)
        send_probe(r);
}

static void send_subscribe(dc_redis_t *r, dc_redis_sub_t *sub);

static void send_setup(dc_redis_t *r, dc_redis_conn_t *conn, const char *what, char *buf, int len)
{
    DC_ASSERT(len > 0 && buf != NULL);
    conn->setup_left++;
    submit(r, cmd_new_internal(r, DC_REDIS_CMD_SETUP, on_setup_reply, what), buf, len);
}

void dc__redis_on_connected(dc_redis_t *r)
{
    dc_redis_conn_t *conn = r->conn;
    char *buf = NULL;
    int len;
    conn->setup_left = 0;
    if (r->db != 0) {
        len = redisFormatCommand(&buf, "SELECT %d", r->db);
        send_setup(r, conn, "SELECT", buf, len);
    }
    for (dc_redis_script_t *s = r->scripts; s != NULL; s = s->next) {
        len = redisFormatCommand(&buf, "SCRIPT LOAD %b", s->src, s->len);
        send_setup(r, conn, "SCRIPT LOAD", buf, len);
    }
    /* always one reply to wait for, even with nothing to select or load */
    len = redisFormatCommand(&buf, "PING");
    send_setup(r, conn, "PING", buf, len);
    /* after the above (pipelined in order; hiredis gives pending regular replies before pub/sub
     * ones): once subscribed, the connection takes nothing else */
    for (dc_redis_sub_t *sub = r->subs; sub != NULL; sub = sub->next)
        send_subscribe(r, sub);
}

/* ---- pub/sub ---- */

static void sub_unlink(dc_redis_t *r, dc_redis_sub_t *sub)
{
    for (dc_redis_sub_t **pp = &r->subs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == sub) {
            *pp = sub->next;
            return;
        }
    }
}

/* A dead subscription, once hiredis no longer holds it. */
static void sub_free(dc_redis_sub_t *sub)
{
    sub_unlink(sub->r, sub);
    sub->magic = 0;
    free(sub->channel);
    free(sub);
}

static bool str_is(const redisReply *e, const char *s)
{
    size_t n = strlen(s);
    return e->type == REDIS_REPLY_STRING && e->len == n && memcmp(e->str, s, n) == 0;
}

dc_redis_push_t dc_redis_push_parse(const redisReply *reply, const char **msg, size_t *len)
{
    *msg = NULL;
    *len = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
        return DC_REDIS_PUSH_OTHER;
    const redisReply *kind = reply->element[0];
    if (str_is(kind, "message")) {
        if (reply->elements != 3 || reply->element[2]->type != REDIS_REPLY_STRING)
            return DC_REDIS_PUSH_OTHER;
        *msg = reply->element[2]->str;
        *len = reply->element[2]->len;
        return DC_REDIS_PUSH_MESSAGE;
    }
    if (str_is(kind, "subscribe"))
        return DC_REDIS_PUSH_SUBSCRIBE;
    if (str_is(kind, "unsubscribe"))
        return DC_REDIS_PUSH_UNSUBSCRIBE;
    return DC_REDIS_PUSH_OTHER;
}

/* hiredis calls this for the subscribe confirmation, for every message, and once with NULL when
 * the context is freed (connection lost or dropped). Subscription replies never time out. */
static void on_sub_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    dc_redis_sub_t *sub = privdata;
    DC_CHECK_MAGIC(sub, DC_REDIS_SUB_MAGIC);
    const redisReply *reply = reply_;
    if (reply == NULL) {
        sub->active = false;
        if (sub->dead)
            sub_free(sub);
        dc__redis_conn_lost(ac->data);
        return;
    }
    sub->r->consecutive_timeouts = 0;
    const char *msg;
    size_t len;
    dc_redis_push_t kind = dc_redis_push_parse(reply, &msg, &len);
    if (sub->dead) {
        if (kind == DC_REDIS_PUSH_UNSUBSCRIBE) /* hiredis forgets the channel after this call */
            sub_free(sub);
        return;
    }
    if (kind == DC_REDIS_PUSH_MESSAGE)
        sub->cb(sub->data, msg, len);
    else if (kind == DC_REDIS_PUSH_SUBSCRIBE)
        sub->cb(sub->data, NULL, 0);
}

static void send_subscribe(dc_redis_t *r, dc_redis_sub_t *sub)
{
    dc_redis_conn_t *conn = r->conn;
    if (sub->dead || !conn_open(r))
        return; /* sent on the next connect */
    char *buf;
    int len = redisFormatCommand(&buf, "SUBSCRIBE %b", sub->channel, sub->len);
    DC_ASSERT(len > 0);
    if (redisAsyncFormattedCommand(conn->ac, on_sub_reply, sub, buf, (size_t)len) != REDIS_OK)
        dc_log_warn("redis: SUBSCRIBE %s could not be sent", sub->channel);
    else
        sub->active = true;
    redisFreeCommand(buf);
}

void dc_redis_unsubscribe(dc_redis_t *r, dc_redis_sub_t *sub)
{
    if (r == NULL)
        return; /* closed: its subscriptions went with it */
    DC_CHECK_MAGIC(sub, DC_REDIS_SUB_MAGIC);
    sub->dead = true;
    dc_redis_conn_t *conn = r->conn;
    if (!sub->active || !conn_open(r)) {
        if (!sub->active)
            sub_free(sub);
        return; /* active on a dying connection: its NULL callback frees it */
    }
    char *buf;
    int len = redisFormatCommand(&buf, "UNSUBSCRIBE %b", sub->channel, sub->len);
    DC_ASSERT(len > 0);
    /* the reply goes to the channel's callback (hiredis' subscribe bookkeeping), i.e. on_sub_reply */
    if (redisAsyncFormattedCommand(conn->ac, on_sub_reply, sub, buf, (size_t)len) != REDIS_OK) {
        /* hiredis still holds the channel and no UNSUBSCRIBE reply will free it: drop the
         * connection, whose NULL reply frees it; the reconnect subscribes the live channels only */
        dc_log_warn("redis: UNSUBSCRIBE %s could not be sent, reconnecting", sub->channel);
        request_drop(r, conn->gen);
    }
    redisFreeCommand(buf);
}

dc_redis_sub_t *dc_redis_subscribe(dc_redis_t *r, const char *channel, dc_redis_msg_cb cb, void *data)
{
    if (r == NULL)
        return NULL;
    DC_CHECK_MAGIC(r, DC_REDIS_MAGIC);
    DC_ASSERT(!r->closing);
    dc_redis_sub_t *sub = dc_calloc(1, sizeof(*sub));
    sub->magic = DC_REDIS_SUB_MAGIC;
    sub->r = r;
    sub->len = strlen(channel);
    sub->channel = dc_strndup(channel, sub->len);
    sub->cb = cb;
    sub->data = data;
    sub->next = r->subs;
    r->subs = sub;
    send_subscribe(r, sub);
    return sub;
}

/* ---- public API ---- */

static void on_idle(uv_idle_t *h)
{
    dc_redis_t *r = h->data;
    /* only the records present now: a callback that resubmits while down waits for the next turn */
    dc_list_t list;
    dc_list_init(&list);
    dc_list_splice_back(&list, &r->deferred);
    dc_list_node_t *n;
    while ((n = dc_list_pop_front(&list)) != NULL) {
        dc_redis_cmd_t *c = dc_container_of(n, dc_redis_cmd_t, link);
        cmd_complete(c, c->err, NULL);
    }
    if (r->drop_requested) {
        r->drop_requested = false;
        if (r->conn != NULL && r->conn->gen == r->drop_gen && !r->closing)
            dc__redis_conn_drop(r->conn); /* pending records complete with DC_EIO */
    }
    if (r->closing && !r->torn_down) {
        r->torn_down = true;
        if (r->conn != NULL)
            dc__redis_conn_drop(r->conn); /* every command in hiredis completes with DC_EIO */
        DC_ASSERT(dc_list_empty(&r->pending) && dc_list_empty(&r->deferred));
        dc__redis_close_handles(r);
        return;
    }
    if (dc_list_empty(&r->deferred))
        uv_idle_stop(h);
}

int dc_redis_create(uv_loop_t *loop, const dc_redis_opts_t *opts, dc_redis_t **out)
{
    dc_redis_t *r = dc_calloc(1, sizeof(*r));
    r->magic = DC_REDIS_MAGIC;
    dc_list_init(&r->pending);
    dc_list_init(&r->deferred);
    r->loop = loop;
    if (parse_url(r, opts->url) != 0) {
        free(r->host);
        free(r->path);
        free(r);
        return DC_EINVAL;
    }
    r->o = *opts;
    r->o.url = NULL;
    if (r->o.connect_timeout_ms == 0)
        r->o.connect_timeout_ms = 1000;
    if (r->o.command_timeout_ms == 0)
        r->o.command_timeout_ms = 500;
    if (r->o.backoff_min_ms == 0)
        r->o.backoff_min_ms = 50;
    if (r->o.backoff_max_ms == 0)
        r->o.backoff_max_ms = 2000;
    if (r->o.backoff_max_ms < r->o.backoff_min_ms)
        r->o.backoff_max_ms = r->o.backoff_min_ms;
    r->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)r ^ 0x9E3779B97F4A7C15ULL;
    if (r->rng == 0)
        r->rng = 1;
    uv_timer_init(loop, &r->cmd_timer);
    uv_timer_init(loop, &r->retry_timer);
    uv_timer_init(loop, &r->ka_timer);
    uv_idle_init(loop, &r->idle);
    r->cmd_timer.data = r->retry_timer.data = r->ka_timer.data = r->idle.data = r;
    uv_timer_start(&r->ka_timer, on_keepalive, DC_REDIS_KEEPALIVE_MS / 4, DC_REDIS_KEEPALIVE_MS / 4);
    dc__redis_conn_start(r);
    *out = r;
    return 0;
}

int dc_redis_command(dc_redis_t *r, dc_redis_cb cb, void *data, const char *fmt, ...)
{
    if (r == NULL) /* a closed client (see dc_redis_close) */
        return DC_EINVAL;
    DC_CHECK_MAGIC(r, DC_REDIS_MAGIC);
    if (r->closing)
        return DC_EINVAL;
    char *buf;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&buf, fmt, ap);
    va_end(ap);
    if (len <= 0)
        return DC_EINVAL;
    submit(r, cmd_new(r, cb, data), buf, len);
    return 0;
}

int dc_redis_commandargv(dc_redis_t *r, dc_redis_cb cb, void *data, int argc, const char **argv, const size_t *argvlen)
{
    if (r == NULL) /* a closed client (see dc_redis_close) */
        return DC_EINVAL;
    DC_CHECK_MAGIC(r, DC_REDIS_MAGIC);
    if (r->closing || argc <= 0)
        return DC_EINVAL;
    char *buf;
    int len = redisFormatCommandArgv(&buf, argc, argv, argvlen);
    if (len <= 0)
        return DC_EINVAL;
    submit(r, cmd_new(r, cb, data), buf, len);
    return 0;
}

dc_redis_script_t *dc_redis_script_register(dc_redis_t *r, const char *lua_source)
{
    DC_CHECK_MAGIC(r, DC_REDIS_MAGIC);
    dc_redis_script_t *s = dc_calloc(1, sizeof(*s));
    unsigned char d[20];
    s->len = strlen(lua_source);
    s->src = dc_strndup(lua_source, s->len);
    int hrc = mbedtls_sha1_ret((const unsigned char *)s->src, s->len, d);
    DC_ASSERT(hrc == 0);
    for (int i = 0; i < 20; i++)
        snprintf(s->sha + 2 * i, 3, "%02x", d[i]);
    s->next = r->scripts;
    r->scripts = s;
    if (conn_open(r)) { /* else loaded by the next connection's setup */
        char *buf;
        int len = redisFormatCommand(&buf, "SCRIPT LOAD %b", s->src, s->len);
        DC_ASSERT(len > 0);
        submit(r, cmd_new_internal(r, DC_REDIS_CMD_INTERNAL, on_internal_reply, "SCRIPT LOAD"), buf, len);
    }
    return s;
}

const char *dc_redis_script_sha(const dc_redis_script_t *s)
{
    return s->sha;
}

int dc_redis_eval(dc_redis_t *r, dc_redis_script_t *s, dc_redis_cb cb, void *data, int nkeys, int nargs,
                  const char **args, const size_t *lens)
{
    if (r == NULL) /* a closed client (see dc_redis_close) */
        return DC_EINVAL;
    DC_CHECK_MAGIC(r, DC_REDIS_MAGIC);
    if (r->closing || nkeys < 0 || nargs < 0)
        return DC_EINVAL;
    int n = nkeys + nargs;
    size_t bytes = 0;
    for (int i = 0; i < n; i++)
        bytes += lens[i];
    dc_redis_cmd_t *c = cmd_new(r, cb, data);
    /* one block: n pointers, n lengths, then the bytes (kept for the EVAL fallback) */
    char *block = dc_malloc(sizeof(char *) * (size_t)n + sizeof(size_t) * (size_t)n + bytes + 1);
    c->args = (const char **)block;
    c->lens = (size_t *)(block + sizeof(char *) * (size_t)n);
    char *p = block + (sizeof(char *) + sizeof(size_t)) * (size_t)n;
    for (int i = 0; i < n; i++) {
        memcpy(p, args[i], lens[i]);
        c->args[i] = p;
        c->lens[i] = lens[i];
        p += lens[i];
    }
    c->script = s;
    c->nkeys = nkeys;
    c->nargs = nargs;

    const char **argv = dc_malloc(sizeof(*argv) * (size_t)(n + 3));
    size_t *argvlen = dc_malloc(sizeof(*argvlen) * (size_t)(n + 3));
    char nk[16];
    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = s->sha;
    argvlen[1] = 40;
    argvlen[2] = (size_t)snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[2] = nk;
    for (int i = 0; i < n; i++) {
        argv[3 + i] = c->args[i];
        argvlen[3 + i] = c->lens[i];
    }
    char *buf;
    int len = redisFormatCommandArgv(&buf, n + 3, argv, argvlen);
    free(argv);
    free(argvlen);
    DC_ASSERT(len > 0);
    submit(r, c, buf, len);
    return 0;
}

bool dc_redis_connected(const dc_redis_t *r)
{
    return r != NULL && usable(r);
}

uint64_t dc_redis_reconnects(const dc_redis_t *r)
{
    return r->reconnects;
}

/* ---- the last error (process-wide, for /health) ---- */

static pthread_mutex_t last_error_mu = PTHREAD_MUTEX_INITIALIZER;
static char last_error[256];
static uint64_t last_error_ms; /* 0: none yet */

void dc_redis_note_error(const char *fmt, ...)
{
    char text[sizeof(last_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    uint64_t now = dc_now_wall_ms();
    pthread_mutex_lock(&last_error_mu);
    memcpy(last_error, text, sizeof(text));
    last_error_ms = now > 0 ? now : 1;
    pthread_mutex_unlock(&last_error_mu);
}

bool dc_redis_last_error(char *buf, size_t cap, uint64_t *wall_ms)
{
    pthread_mutex_lock(&last_error_mu);
    snprintf(buf, cap, "%s", last_error);
    *wall_ms = last_error_ms;
    pthread_mutex_unlock(&last_error_mu);
    return *wall_ms != 0;
}

void dc_redis_set_state_cb(dc_redis_t *r, void (*cb)(void *data, bool up), void *data)
{
    r->state_cb = cb;
    r->state_data = data;
}

void dc_redis_close(dc_redis_t *r, void (*on_closed)(void *data), void *data)
{
    DC_CHECK_MAGIC(r, DC_REDIS_MAGIC);
    DC_ASSERT(!r->closing);
    r->closing = true;
    r->on_closed = on_closed;
    r->closed_data = data;
    uv_timer_stop(&r->retry_timer);
    uv_idle_start(&r->idle, on_idle); /* teardown at top level, never inside a hiredis callback */
}
