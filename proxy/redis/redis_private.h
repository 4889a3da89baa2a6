/*
 * Internals shared by redis.c (client, commands, scripts) and redis_conn.c (one connection: hiredis
 * event hooks on a uv_poll_t, connect/reconnect/backoff). Not part of the module's face.
 *
 * Life of a command record (cmd_t): created per accepted command; hiredis' privdata is the record.
 * It sits in r's pending list (ordered by deadline) while waiting for Redis, or in r's deferred list
 * when it must fail asynchronously. `done` is set when the user callback has run (reply, timeout or
 * error); `in_hiredis` while hiredis still holds the record and will call back (with a reply or with
 * NULL when the context is freed). The record is freed once done && !in_hiredis, so a timeout and
 * the later hiredis callback never double-complete or touch freed memory.
 *
 * Life of a connection: CONNECTING (TCP/unix connect under way) -> SETUP (connected; SELECT, the
 * SCRIPT LOADs and a PING are pipelined and every one must answer without error within the command
 * timeout) -> UP -> DEAD. A connect that succeeds proves nothing (a frozen Redis still completes the
 * TCP handshake from its listen backlog): only replies do. While UP, a command that times out marks
 * the client stalled: it reports "down" and fails new commands fast until Redis answers something
 * (a probe PING is kept in flight); DC_REDIS_DEAD_AFTER_TIMEOUTS timeouts in a row drop the
 * connection. An idle command client sends a probe PING every keepalive interval so that a frozen
 * Redis is noticed without traffic. User commands are accepted only while UP and not stalled.
 *
 * hiredis rules honoured here: redisAsyncFree() is only called from a uv callback (top level),
 * never from inside a hiredis callback; a context that hiredis frees by itself (I/O error, failed
 * connect) is detected through the ev.cleanup hook, after which conn->ac is NULL.
 */
#ifndef DC_REDIS_PRIVATE_H
#define DC_REDIS_PRIVATE_H

#include "core/list.h"
#include "redis/redis.h"

#include <hiredis/async.h>

#define DC_REDIS_MAGIC 0x52444953u
#define DC_REDIS_CMD_MAGIC 0x52434d44u

typedef struct dc_redis_cmd dc_redis_cmd_t;

/* USER: a caller's command, accepted only while usable. INTERNAL: sent by the client itself (a
 * SCRIPT LOAD after connect), failures logged. SETUP: part of a connection's setup, which fails as
 * a whole when one of them fails. PROBE: a PING that checks Redis still answers. The last three are
 * accepted while the connection is open (SETUP or UP) and their data is the record itself. */
typedef enum { DC_REDIS_CMD_USER, DC_REDIS_CMD_INTERNAL, DC_REDIS_CMD_SETUP, DC_REDIS_CMD_PROBE } dc_redis_cmd_kind_t;
typedef struct dc_redis_conn dc_redis_conn_t;

struct dc_redis_script {
    dc_redis_script_t *next;
    char sha[41];
    char *src;
    size_t len;
};

struct dc_redis_cmd {
    uint32_t magic;
    dc_list_node_t link; /* in r->pending (in_pending) or r->deferred */
    dc_redis_t *r;
    dc_redis_cb cb;
    void *data;
    uint64_t deadline; /* uv_now() ms */
    int err;           /* error to report when deferred */
    bool done, in_hiredis, in_pending;
    dc_redis_cmd_kind_t kind;
    unsigned gen;     /* connection generation it was sent on (SETUP records) */
    const char *what; /* static label for logs (internal records) */
    /* eval fallback: copies of keys+args, and the script to EVAL on NOSCRIPT */
    dc_redis_script_t *script;
    int nkeys, nargs;
    const char **args;
    size_t *lens;
};

/* A subscription: hiredis keeps calling back with this record for every message on the channel
 * until the context is freed (then once with NULL). Owned by r, freed by dc_redis_close. */
struct dc_redis_sub {
    uint32_t magic;
    bool active; /* SUBSCRIBE sent on the current connection: hiredis will call back */
    bool dead;   /* unsubscribed: freed at hiredis' last callback for it (or at once if inactive) */
    struct dc_redis_sub *next;
    dc_redis_t *r;
    char *channel;
    size_t len;
    dc_redis_msg_cb cb;
    void *data;
};

#define DC_REDIS_SUB_MAGIC 0x52535542u

typedef enum {
    DC_REDIS_CONN_CONNECTING,
    DC_REDIS_CONN_SETUP,
    DC_REDIS_CONN_UP,
    DC_REDIS_CONN_DEAD
} dc_redis_conn_state_t;

struct dc_redis_conn {
    uv_poll_t poll;
    dc_redis_t *r;
    redisAsyncContext *ac; /* NULL once hiredis has freed (or is freeing) the context */
    dc_redis_conn_state_t state;
    int events;          /* UV_READABLE | UV_WRITABLE currently requested by hiredis */
    unsigned gen;        /* r->gen when this connection started */
    unsigned setup_left; /* SETUP replies still awaited */
    /* the reply guard (redis_conn.c): hiredis' reader builds replies through these, which refuse
     * what hiredis would assert on or over-allocate for */
    redisReplyObjectFunctions guard_fns;
    const redisReplyObjectFunctions *reader_fns; /* hiredis' own, which the guard calls */
    bool guard_refused;                          /* the guard refused a reply: the drop is a protocol error */
    bool guard_unsubscribe;                      /* the pub/sub array being read is an (p)unsubscribe */
    int guard_elements;                          /* elements of the top-level array being read */
};

struct dc_redis {
    uint32_t magic;
    uv_loop_t *loop;
    dc_redis_opts_t o; /* with defaults applied; o.url is not kept */
    char *host;        /* TCP host (brackets stripped) or NULL */
    int port;
    char *path; /* unix socket path or NULL */
    int db;

    dc_redis_conn_t *conn;  /* connecting or up; NULL while waiting for a retry */
    unsigned live_conns;    /* conns not yet freed (their poll may still be closing) */
    uv_timer_t cmd_timer;   /* oldest pending command deadline */
    uv_timer_t retry_timer; /* backoff delay, then connect timeout of the attempt */
    uv_idle_t idle;         /* deferred completions, drops and teardown, next loop turn */
    uv_timer_t ka_timer;    /* keepalive: probe an idle command connection */
    int open_handles;

    dc_list_t pending;  /* commands in hiredis, not done, deadline order, through c->link */
    dc_list_t deferred; /* commands to complete with c->err next turn, through c->link */
    size_t inflight;    /* records held by hiredis */

    unsigned attempt; /* reconnect attempts since the last successful connect */
    /* connections in a row dropped for a protocol error (the reply guard, redis_conn.c): the next
     * connect starts its backoff this far up, so a server that answers garbage is not reconnected
     * to in a tight loop. Forgotten once a connection lasts DC_REDIS_STRIKES_FORGET_MS. */
    unsigned protocol_strikes;
    uint64_t up_since_ms; /* uv_now() when the current connection became usable */
    unsigned consecutive_timeouts;
    bool stalled;        /* a command timed out on the UP connection and nothing answered since */
    bool probe_pending;  /* a PROBE record has not completed yet */
    bool reported_up;    /* the last state given to state_cb (false before the first "up") */
    bool drop_requested; /* drop the connection of generation drop_gen on the next loop turn */
    unsigned gen, drop_gen;
    uint64_t last_reply_ms; /* uv_now() of the last reply on the command connection */
    uint64_t reconnects;
    bool ever_up;
    uint64_t rng;

    dc_redis_script_t *scripts;
    dc_redis_sub_t *subs;
    void (*state_cb)(void *data, bool up);
    void *state_data;

    bool closing, torn_down;
    void (*on_closed)(void *data);
    void *closed_data;
};

/* redis_conn.c */
void dc__redis_conn_start(dc_redis_t *r);
/* Mark conn lost (idempotent): detach from r, notify "down" if it was up, schedule a retry. */
void dc__redis_conn_lost(dc_redis_conn_t *conn);
/* Lose and free conn now; pending records complete with DC_EIO. Only from a uv callback. */
void dc__redis_conn_drop(dc_redis_conn_t *conn);
void dc__redis_schedule_retry(dc_redis_t *r);
/* Free r once torn down and every handle and conn has closed; runs on_closed. */
void dc__redis_maybe_finish(dc_redis_t *r);
/* Stop and close r's timers and idle handle (teardown). */
void dc__redis_close_handles(dc_redis_t *r);

/* redis.c */
/* Called when the connection is established (state SETUP): sends SELECT, the SCRIPT LOADs, a PING
 * and the subscriptions; the connection becomes UP when the setup commands have all answered. */
void dc__redis_on_connected(dc_redis_t *r);
/* Give state_cb the current usability if it changed since the last call. */
void dc__redis_report_state(dc_redis_t *r);
void dc__redis_on_reply(redisAsyncContext *ac, void *reply, void *privdata);

#endif
