/*
 * Redis client for one worker thread: hiredis async driven by the worker's libuv loop, with our own
 * event glue (one uv_poll_t per connection), connect and per-command timeouts, reconnect with
 * exponential backoff and full jitter, and Lua scripts run by EVALSHA with a transparent EVAL
 * fallback on NOSCRIPT.
 *
 * Ownership and threads: a dc_redis_t belongs to the thread that runs its loop and is never shared.
 * It owns its connection, its timers and every registered script; dc_redis_close() releases all of
 * it after the last uv handle has closed.
 *
 * Completion contract: every command accepted by dc_redis_command*() / dc_redis_eval() (return 0)
 * completes exactly once through its callback, always from the loop (never from inside the call
 * that submitted it). A non-zero return means the callback will never run. Redis is optional for
 * dexcache, so commands never wait for a connection: while disconnected they fail fast with
 * DC_EAGAIN, and the number of commands in flight is bounded.
 */
#ifndef DC_REDIS_REDIS_H
#define DC_REDIS_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

typedef struct dc_redis dc_redis_t;
typedef struct dc_redis_script dc_redis_script_t;

typedef struct dc_redis_opts {
    const char *url;             /* redis://host[:port][/db] (host may be [IPv6]) or unix:///path[?db=N] */
    uint64_t connect_timeout_ms; /* 0 = default 1000 */
    uint64_t command_timeout_ms; /* 0 = default 500: no reply in time completes with DC_ETIMEDOUT */
    uint64_t backoff_min_ms;     /* 0 = default 50 */
    uint64_t backoff_max_ms;     /* 0 = default 2000; delay = uniform(0, min(max, min * 2^attempt)) */
} dc_redis_opts_t;

/* Number of consecutive command timeouts after which the connection is considered dead, dropped
 * and reconnected. Any reply (even a late one) resets the count. The first timeout already makes
 * the client report "down" (see dc_redis_connected) until Redis answers again. */
#define DC_REDIS_DEAD_AFTER_TIMEOUTS 3
/* A command client (one without subscriptions) that got no reply for this long sends a PING
 * (checked every quarter of it). */
#define DC_REDIS_KEEPALIVE_MS 1000
/* Commands in flight on one connection beyond this fail fast with DC_EAGAIN. */
#define DC_REDIS_MAX_INFLIGHT 65536

/* A Redis server is trusted to speak RESP, not to be sane: a reply buffered past this many bytes, an
 * array of more elements, a reply no command asked for, or a pub/sub message hiredis cannot route
 * (it would assert) drops the connection as a protocol error (it reconnects with backoff). The
 * largest legitimate reply is an L2 value (cache/l2fleet.h: 8 MiB). */
#define DC_REDIS_MAX_REPLY_BYTES (64u * 1024 * 1024)
#define DC_REDIS_MAX_REPLY_ELEMENTS (1 << 20)
/* After such drops, reconnects start their backoff higher (one step per drop in a row); a
 * connection that stays up this long clears the count. */
#define DC_REDIS_STRIKES_FORGET_MS 30000

/* Reply callback. Either err == 0 and reply is the hiredis reply (owned by hiredis, valid only
 * during the call; a Redis error reply is err 0 with reply->type == REDIS_REPLY_ERROR), or err < 0
 * and reply == NULL: DC_ETIMEDOUT (no reply within command_timeout_ms), DC_EIO (the connection
 * dropped or the client was closed), DC_EAGAIN (not connected right now, or too many in flight). */
typedef void (*dc_redis_cb)(void *data, int err, const redisReply *reply);

/* Parse opts->url (DC_EINVAL on a bad url), allocate and start connecting (asynchronously).
 * The loop must outlive the client. */
int dc_redis_create(uv_loop_t *loop, const dc_redis_opts_t *opts, dc_redis_t **out);

/* Queue a command (hiredis format: %s, %b, ...). Returns 0 (cb will run once) or DC_EINVAL when
 * the client is closing or the command cannot be formatted (cb will not run). */
int dc_redis_command(dc_redis_t *r, dc_redis_cb cb, void *data, const char *fmt, ...);
/* Same with an argument vector; argv/argvlen are copied before returning. */
int dc_redis_commandargv(dc_redis_t *r, dc_redis_cb cb, void *data, int argc, const char **argv, const size_t *argvlen);

/* Register a Lua script; its SHA1 is computed locally and it is SCRIPT LOADed on every (re)connect.
 * The script is owned by r and freed by dc_redis_close(). Never returns NULL. */
dc_redis_script_t *dc_redis_script_register(dc_redis_t *r, const char *lua_source);
/* Hex SHA1 of the script (40 chars + NUL). */
const char *dc_redis_script_sha(const dc_redis_script_t *s);
/* EVALSHA s nkeys args... where args holds nkeys keys then nargs arguments (lens[i] bytes each,
 * copied). On a NOSCRIPT error the same call is re-sent as EVAL (which also caches the script in
 * Redis) and the caller only sees the EVAL result. Same return contract as dc_redis_command(). */
int dc_redis_eval(dc_redis_t *r, dc_redis_script_t *s, dc_redis_cb cb, void *data, int nkeys, int nargs,
                  const char **args, const size_t *lens);

/* True while Redis is known to answer: the connection is established, its setup (SELECT, SCRIPT
 * LOADs, a PING) answered without error, no command has timed out since the last reply, and no
 * command is past its deadline. A connect alone is not enough (a frozen Redis accepts TCP
 * connections). Commands are accepted only while this is true; otherwise they fail fast with
 * DC_EAGAIN. */
bool dc_redis_connected(const dc_redis_t *r);
/* How many times the connection was established again after having been lost (for /metrics). */
uint64_t dc_redis_reconnects(const dc_redis_t *r);
/* Called from the loop on each change of dc_redis_connected()'s answer that the client sees happen
 * (setup answered, a command timed out, Redis answered again, connection lost); the first call is
 * an "up". Not called once dc_redis_close() has been called. */
void dc_redis_set_state_cb(dc_redis_t *r, void (*cb)(void *data, bool up), void *data);

/* Process-wide, any thread: the last failure a Redis client saw (connect failed or timed out, the
 * connection lost, a socket or protocol error, a command timeout), for /health. note: printf-style,
 * at most 255 bytes kept, stamped with the wall clock. last: false when none yet; else the text in
 * buf (cap >= 1) and its Unix time in ms. */
void dc_redis_note_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool dc_redis_last_error(char *buf, size_t cap, uint64_t *wall_ms);

/*
 * Pub/sub. Redis lets a connection that has subscribed send nothing but (un)subscriptions, so a
 * client used for subscribe is a subscriber only: commands go through another dc_redis_t.
 * Subscriptions live as long as r and are sent again on every (re)connect. `cb` runs on the loop
 * with msg != NULL for each message published on `channel`, and with msg == NULL each time the
 * subscription is (re)established, so the owner can catch up on what it missed while it was
 * disconnected (Redis does not keep messages for absent subscribers).
 */
typedef void (*dc_redis_msg_cb)(void *data, const char *msg, size_t len);
typedef struct dc_redis_sub dc_redis_sub_t;
/* Returns the subscription's handle (owned by r), for dc_redis_unsubscribe. */
dc_redis_sub_t *dc_redis_subscribe(dc_redis_t *r, const char *channel, dc_redis_msg_cb cb, void *data);
/* Stop: cb never runs again after this call; the handle is freed by r. */
void dc_redis_unsubscribe(dc_redis_t *r, dc_redis_sub_t *sub);

/* What a reply on a subscriber connection is (pure; used by the client, exposed for tests and
 * fuzzing): MESSAGE = ["message", channel, payload] with a string payload (*msg, *len point into
 * the reply); SUBSCRIBE / UNSUBSCRIBE = the confirmations; OTHER = anything else (ignored). */
typedef enum {
    DC_REDIS_PUSH_OTHER,
    DC_REDIS_PUSH_MESSAGE,
    DC_REDIS_PUSH_SUBSCRIBE,
    DC_REDIS_PUSH_UNSUBSCRIBE
} dc_redis_push_t;
dc_redis_push_t dc_redis_push_parse(const redisReply *reply, const char **msg, size_t *len);

/* Start closing: on the next loop turn every pending command completes with DC_EIO, the connection
 * is freed, and once all uv handles have closed r and its scripts are freed and on_closed (may be
 * NULL) runs. Safe to call from inside a reply callback. r must not be used after this call; an
 * owner that keeps its field may set it to NULL instead: a NULL client is accepted by the command
 * functions (DC_EINVAL, the callback will not run), dc_redis_connected (false), dc_redis_subscribe
 * (NULL) and dc_redis_unsubscribe (no-op). */
void dc_redis_close(dc_redis_t *r, void (*on_closed)(void *data), void *data);

#endif
