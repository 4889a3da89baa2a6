/*
 * One Redis connection driven by libuv: hiredis' ev hooks mapped onto a uv_poll_t, connect
 * timeout, loss detection and reconnect with exponential backoff and full jitter.
 *
 * Why not hiredis' own libuv adapter: on POLLERR libuv stops the watcher and reports a negative
 * status, which that adapter ignores, so a dead Redis is never noticed. Here an error status makes
 * hiredis look at the socket (and we drop the connection if it still has not seen the error).
 */
#include "redis/redis_private.h"
#include "core/error.h"
#include "core/log.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void on_poll_closed(uv_handle_t *h)
{
    dc_redis_conn_t *conn = h->data;
    dc_redis_t *r = conn->r;
    free(conn);
    r->live_conns--;
    dc__redis_maybe_finish(r);
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Apply a change to the event mask hiredis wants. Idempotent, as hiredis requires. */
static void ev_update(dc_redis_conn_t *conn, int add, int del)
{
    if (conn->ac == NULL)
        return;
    int ev = (conn->events | add) & ~del;
    if (ev == conn->events)
        return;
    conn->events = ev;
    if (ev != 0)
        uv_poll_start(&conn->poll, ev, on_poll);
    else
        uv_poll_stop(&conn->poll);
}

static void ev_add_read(void *p)
{
    ev_update(p, UV_READABLE, 0);
}

static void ev_del_read(void *p)
{
    ev_update(p, 0, UV_READABLE);
}

static void ev_add_write(void *p)
{
    ev_update(p, UV_WRITABLE, 0);
}

static void ev_del_write(void *p)
{
    ev_update(p, 0, UV_WRITABLE);
}

/* hiredis is about to free the context (redisFree closes the fd right after): stop watching the fd
 * now, and free conn once the poll handle has closed. ac->data stays valid until then because
 * hiredis may still call onDisconnect after this hook. */
static void ev_cleanup(void *p)
{
    dc_redis_conn_t *conn = p;
    if (conn->ac == NULL)
        return;
    conn->ac = NULL;
    conn->events = 0;
    uv_poll_stop(&conn->poll);
    uv_close((uv_handle_t *)&conn->poll, on_poll_closed);
}

/*
 * The reply guard. hiredis 0.14 asserts (aborting the process) on a reply no callback waits for
 * outside pub/sub, and on a pub/sub array that is not [string, string, ...] or an unsubscribe
 * without its count; it allocates an array of any announced size; and in pub/sub mode a reply that
 * finds no callback (a message for a channel it does not hold, a non-array value with no command
 * waiting) is handed to the PREVIOUS reply's callback again (redisProcessCallbacks keeps `cb`
 * across its loop): a second call on a completed command, freed memory. Its reader builds every
 * reply through reader->fn, so these wrappers see each value as it is parsed, before hiredis acts
 * on it, and refuse (return NULL: a reader error, hiredis then drops the connection) whatever
 * would not reach exactly the callback it belongs to. Top-level values are task->parent == NULL;
 * the elements of a top-level array have that array's task as parent.
 */
static bool guard_top_level_ok(dc_redis_conn_t *conn, int type, int elements)
{
    redisAsyncContext *ac = conn->ac;
    if (ac == NULL)
        return false;
    if (ac->replies.head != NULL)
        return true; /* a command's callback takes it, whatever it is */
    if (!(ac->c.flags & REDIS_SUBSCRIBED))
        return false; /* nothing asked for it */
    conn->guard_unsubscribe = false;
    conn->guard_elements = elements;
    /* pub/sub: ["message", channel, payload], ["subscribe", channel, count], ...; any other value
     * goes to the callback of a command sent while subscribed (we send none) */
    if (type != REDIS_REPLY_ARRAY)
        return ac->sub.invalid.head != NULL;
    return elements >= 3;
}

/* Is `channel` one hiredis holds a callback for (a live subscription sent on this connection)? */
static bool guard_channel_known(dc_redis_conn_t *conn, const char *channel, size_t len)
{
    for (const dc_redis_sub_t *sub = conn->r->subs; sub != NULL; sub = sub->next)
        if (sub->active && sub->len == len && memcmp(sub->channel, channel, len) == 0)
            return true;
    return false;
}

/* `elements`: of the array being created (hiredis sets task->elements only after createArray) */
static bool guard_element_ok(dc_redis_conn_t *conn, const redisReadTask *task, const char *str, size_t len,
                             int elements)
{
    if (task->parent == NULL)
        return guard_top_level_ok(conn, task->type, elements);
    if (task->parent->parent != NULL || conn->ac == NULL || conn->ac->replies.head != NULL ||
        !(conn->ac->c.flags & REDIS_SUBSCRIBED))
        return true;
    /* an element of a pub/sub array: [0] a kind without the pattern variants (we subscribe to
     * none), [1] a channel we hold, [2] of an unsubscribe its count */
    if (task->idx == 0) {
        if (task->type != REDIS_REPLY_STRING || len == 0 || str[0] == 'p' || str[0] == 'P')
            return false;
        conn->guard_unsubscribe = len == 11 && strncasecmp(str, "unsubscribe", 11) == 0;
        return true;
    }
    if (task->idx == 1)
        return task->type == REDIS_REPLY_STRING && guard_channel_known(conn, str, len);
    if (task->idx == 2 && conn->guard_unsubscribe)
        return task->type == REDIS_REPLY_INTEGER;
    return true;
}

static void *guard_refuse(dc_redis_conn_t *conn)
{
    conn->guard_refused = true;
    return NULL;
}

static void *guard_string(const redisReadTask *task, char *str, size_t len)
{
    dc_redis_conn_t *conn = task->privdata;
    return guard_element_ok(conn, task, str, len, 0) ? conn->reader_fns->createString(task, str, len)
                                                     : guard_refuse(conn);
}

static void *guard_array(const redisReadTask *task, int elements)
{
    dc_redis_conn_t *conn = task->privdata;
    if (elements > DC_REDIS_MAX_REPLY_ELEMENTS || !guard_element_ok(conn, task, NULL, 0, elements))
        return guard_refuse(conn);
    return conn->reader_fns->createArray(task, elements);
}

static void *guard_integer(const redisReadTask *task, long long value)
{
    dc_redis_conn_t *conn = task->privdata;
    return guard_element_ok(conn, task, NULL, 0, 0) ? conn->reader_fns->createInteger(task, value) : guard_refuse(conn);
}

static void *guard_nil(const redisReadTask *task)
{
    dc_redis_conn_t *conn = task->privdata;
    return guard_element_ok(conn, task, NULL, 0, 0) ? conn->reader_fns->createNil(task) : guard_refuse(conn);
}

static void guard_install(dc_redis_conn_t *conn)
{
    redisReader *reader = conn->ac->c.reader;
    conn->reader_fns = reader->fn;
    conn->guard_fns = *reader->fn;
    conn->guard_fns.createString = guard_string;
    conn->guard_fns.createArray = guard_array;
    conn->guard_fns.createInteger = guard_integer;
    conn->guard_fns.createNil = guard_nil;
    reader->fn = &conn->guard_fns;
    reader->privdata = conn;
}

/* conn is dropped for a protocol error: back off harder next time (see protocol_strikes). */
static void protocol_strike(dc_redis_conn_t *conn)
{
    dc_redis_t *r = conn->r;
    if (conn->state == DC_REDIS_CONN_UP && uv_now(r->loop) - r->up_since_ms >= DC_REDIS_STRIKES_FORGET_MS)
        r->protocol_strikes = 0;
    if (r->protocol_strikes < 16)
        r->protocol_strikes++;
}

/* Read what the socket has; a reply still incomplete past DC_REDIS_MAX_REPLY_BYTES (a bulk length
 * of 2 GiB is only a header) is a protocol error. */
static void handle_read(dc_redis_conn_t *conn)
{
    redisAsyncHandleRead(conn->ac);
    if (conn->ac != NULL && conn->ac->c.reader != NULL &&
        conn->ac->c.reader->len - conn->ac->c.reader->pos > DC_REDIS_MAX_REPLY_BYTES) {
        dc_log_warn("redis: a reply over %u bytes, dropping connection", DC_REDIS_MAX_REPLY_BYTES);
        protocol_strike(conn);
        dc__redis_conn_drop(conn);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    dc_redis_conn_t *conn = h->data;
    if (conn->ac == NULL)
        return;
    if (status < 0) {
        /* libuv already stopped the watcher (POLLERR). Let hiredis read the socket error. */
        conn->events = 0;
        if (conn->state == DC_REDIS_CONN_CONNECTING)
            redisAsyncHandleWrite(conn->ac);
        else
            handle_read(conn);
        if (conn->ac != NULL) {
            dc_log_warn("redis: socket error (%s), dropping connection", uv_strerror(status));
            dc_redis_note_error("socket error (%s)", uv_strerror(status));
            dc__redis_conn_drop(conn);
        }
        return;
    }
    if (events & UV_WRITABLE)
        redisAsyncHandleWrite(conn->ac);
    if ((events & UV_READABLE) && conn->ac != NULL)
        handle_read(conn);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    dc_redis_conn_t *conn = ac->data;
    dc_redis_t *r = conn->r;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this returns */
        dc_log_debug("redis: connect failed: %s", ac->errstr ? ac->errstr : "?");
        dc_redis_note_error("connect failed: %s", ac->errstr ? ac->errstr : "?");
        dc__redis_conn_lost(conn);
        return;
    }
    if (r->closing || conn->state != DC_REDIS_CONN_CONNECTING)
        return; /* teardown will drop it */
    /* not usable yet: a frozen Redis completes the TCP handshake too; the setup replies decide */
    conn->state = DC_REDIS_CONN_SETUP;
    uv_timer_stop(&r->retry_timer);
    r->consecutive_timeouts = 0;
    dc__redis_on_connected(r);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    dc_redis_conn_t *conn = ac->data;
    if (status != REDIS_OK && (conn->guard_refused || ac->err == REDIS_ERR_PROTOCOL)) {
        dc_log_warn("redis: protocol error (%s), dropping connection",
                    conn->guard_refused ? "a reply no command asked for, or malformed" : ac->errstr);
        dc_redis_note_error("protocol error (%s)",
                            conn->guard_refused ? "a reply no command asked for, or malformed" : ac->errstr);
        protocol_strike(conn);
    }
    dc__redis_conn_lost(conn);
}

static void on_retry_timer(uv_timer_t *t)
{
    dc_redis_t *r = t->data;
    if (r->closing)
        return;
    if (r->conn == NULL) {
        dc__redis_conn_start(r);
    } else if (r->conn->state == DC_REDIS_CONN_CONNECTING) {
        dc_log_warn("redis: connect timed out after %llu ms", (unsigned long long)r->o.connect_timeout_ms);
        dc_redis_note_error("connect timed out after %llu ms", (unsigned long long)r->o.connect_timeout_ms);
        dc__redis_conn_drop(r->conn);
    }
}

static uint64_t next_random(dc_redis_t *r)
{
    /* xorshift64*: per-client state, no locking, good enough for jitter */
    r->rng ^= r->rng >> 12;
    r->rng ^= r->rng << 25;
    r->rng ^= r->rng >> 27;
    return r->rng * 0x2545F4914F6CDD1DULL;
}

void dc__redis_schedule_retry(dc_redis_t *r)
{
    uint64_t cap = r->o.backoff_max_ms;
    if (r->attempt < 32 && (r->o.backoff_min_ms << r->attempt) >> r->attempt == r->o.backoff_min_ms &&
        (r->o.backoff_min_ms << r->attempt) < cap)
        cap = r->o.backoff_min_ms << r->attempt;
    r->attempt++;
    uint64_t delay = next_random(r) % (cap + 1); /* full jitter */
    uv_timer_start(&r->retry_timer, on_retry_timer, delay, 0);
}

void dc__redis_conn_start(dc_redis_t *r)
{
    DC_ASSERT(r->conn == NULL && !r->closing);
    redisAsyncContext *ac = r->path != NULL ? redisAsyncConnectUnix(r->path) : redisAsyncConnect(r->host, r->port);
    if (ac == NULL)
        dc_fatal("out of memory (redisAsyncConnect)");
    if (ac->err) {
        dc_log_debug("redis: connect failed: %s", ac->errstr);
        dc_redis_note_error("connect failed: %s", ac->errstr);
        redisAsyncFree(ac); /* no hooks attached yet */
        dc__redis_schedule_retry(r);
        return;
    }
    dc_redis_conn_t *conn = dc_calloc(1, sizeof(*conn));
    conn->r = r;
    if (uv_poll_init_socket(r->loop, &conn->poll, ac->c.fd) != 0) {
        redisAsyncFree(ac);
        free(conn);
        dc__redis_schedule_retry(r);
        return;
    }
    conn->poll.data = conn;
    conn->ac = ac;
    conn->state = DC_REDIS_CONN_CONNECTING;
    conn->gen = ++r->gen;
    r->live_conns++;
    r->conn = conn;
    ac->data = conn;
    ac->ev.data = conn;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    guard_install(conn);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    ev_update(conn, UV_WRITABLE, 0); /* the first writable event completes the connect */
    uv_timer_start(&r->retry_timer, on_retry_timer, r->o.connect_timeout_ms, 0);
}

void dc__redis_conn_lost(dc_redis_conn_t *conn)
{
    if (conn->state == DC_REDIS_CONN_DEAD)
        return;
    dc_redis_t *r = conn->r;
    bool was_up = conn->state == DC_REDIS_CONN_UP;
    conn->state = DC_REDIS_CONN_DEAD;
    if (r->conn == conn)
        r->conn = NULL;
    r->stalled = false; /* a property of the connection: the next one starts clean */
    if (r->closing)
        return;
    if (was_up) {
        dc_log_warn("redis: connection lost");
        dc_redis_note_error("connection lost");
    }
    dc__redis_schedule_retry(r);
    dc__redis_report_state(r);
}

void dc__redis_conn_drop(dc_redis_conn_t *conn)
{
    dc__redis_conn_lost(conn);
    if (conn->ac != NULL)
        redisAsyncFree(conn->ac); /* NULL replies (-> DC_EIO), then ev_cleanup */
}

static void on_handle_closed(uv_handle_t *h)
{
    dc_redis_t *r = h->data;
    r->open_handles--;
    dc__redis_maybe_finish(r);
}

void dc__redis_maybe_finish(dc_redis_t *r)
{
    if (!r->torn_down || r->open_handles > 0 || r->live_conns > 0)
        return;
    while (r->scripts != NULL) {
        dc_redis_script_t *s = r->scripts;
        r->scripts = s->next;
        free(s->src);
        free(s);
    }
    while (r->subs != NULL) {
        dc_redis_sub_t *sub = r->subs;
        r->subs = sub->next;
        sub->magic = 0;
        free(sub->channel);
        free(sub);
    }
    void (*cb)(void *) = r->on_closed;
    void *data = r->closed_data;
    r->magic = 0;
    free(r->host);
    free(r->path);
    free(r);
    if (cb != NULL)
        cb(data);
}

void dc__redis_close_handles(dc_redis_t *r)
{
    uv_timer_stop(&r->cmd_timer);
    uv_timer_stop(&r->retry_timer);
    uv_timer_stop(&r->ka_timer);
    uv_idle_stop(&r->idle);
    r->open_handles = 4;
    uv_close((uv_handle_t *)&r->cmd_timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->retry_timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->ka_timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->idle, on_handle_closed);
}
