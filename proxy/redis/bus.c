#include "redis/bus.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/metrics.h"
#include "redis/redis.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RETRY_MS 250

/* KEYS[1] the log, KEYS[2] the channel, KEYS[3] a state key, KEYS[4] a key to delete; ARGV[1] the
 * wire message, ARGV[2] the log's length, ARGV[3] what to do with the state key: "-" nothing, ""
 * delete it, else set it to that value, for ARGV[4] ms ("0" = no expiry); ARGV[5] "1": delete
 * KEYS[4]. The keys change with the message, atomically. */
static const char PUBLISH_LUA[] = "if ARGV[3] == '' then redis.call('DEL', KEYS[3])\n"
                                  "elseif ARGV[3] ~= '-' then\n"
                                  "  if ARGV[4] == '0' then redis.call('SET', KEYS[3], ARGV[3])\n"
                                  "  else redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4]) end\n"
                                  "end\n"
                                  "if ARGV[5] == '1' then redis.call('DEL', KEYS[4]) end\n"
                                  "redis.call('LPUSH', KEYS[1], ARGV[1])\n"
                                  "redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)\n"
                                  "redis.call('PEXPIRE', KEYS[1], 86400000)\n"
                                  "return redis.call('PUBLISH', KEYS[2], ARGV[1])\n";

typedef struct qmsg {
    struct qmsg *next;
    size_t len;
    char *skey;  /* NULL = no state key; else the full key (malloc'd) */
    char *sval;  /* NULL = delete skey; else its value (malloc'd) */
    uint64_t px; /* the value's lifetime in ms, 0 = none */
    char *dkey;  /* NULL or a key to delete (malloc'd) */
    char wire[]; /* not NUL-terminated */
} qmsg_t;

static void qmsg_free(qmsg_t *m)
{
    free(m->skey);
    free(m->sval);
    free(m->dkey);
    free(m);
}

struct dc_bus {
    uv_loop_t *loop;
    dc_redis_t *sub, *cmd;
    dc_redis_script_t *publish;
    char *log_key, *channel, *prefix;
    char sender[96];
    /* state sync (dc_bus_set_sync) */
    dc_bus_sync_fn sync_fn;
    void *sync_data;
    uv_timer_t poll;
    size_t sender_len;
    dc_bus_handler handler;
    void *data;
    uv_async_t wake;
    uv_timer_t retry;
    qmsg_t *inbox, **inbox_tail; /* guarded by g_lock; filled by any thread */
    size_t inbox_len;
    qmsg_t *outbox; /* loop thread only: waiting for Redis */
    size_t outbox_len;
    bool need_replay, replaying;
    int closing_parts; /* handles and clients still closing */
    /* hashes of the messages delivered lately (loop thread only), see deliver() */
    uint64_t seen[DC_BUS_LOG_MAX + 24];
    size_t seen_next;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static dc_bus_t *g_bus; /* guarded by g_lock */
static _Atomic bool g_up;
static _Atomic uint64_t g_published, g_received, g_dropped;

bool dc_bus_up(void)
{
    return atomic_load(&g_up);
}
uint64_t dc_bus_published(void)
{
    return atomic_load(&g_published);
}
uint64_t dc_bus_received(void)
{
    return atomic_load(&g_received);
}
uint64_t dc_bus_dropped(void)
{
    return atomic_load(&g_dropped);
}

static void render_metrics(void *ctx, dc_metrics_buf_t *b)
{
    dc_metrics_printf(
        b,
        "# HELP dexcache_bus_up 1 while subscribed to the fleet's message bus (purges, key quarantines).\n"
        "# TYPE dexcache_bus_up gauge\ndexcache_bus_up %d\n"
        "# HELP dexcache_bus_messages_total Fleet bus messages by direction (dropped: queue full while Redis was "
        "away).\n"
        "# TYPE dexcache_bus_messages_total counter\n"
        "dexcache_bus_messages_total{direction=\"published\"} %llu\n"
        "dexcache_bus_messages_total{direction=\"received\"} %llu\n"
        "dexcache_bus_messages_total{direction=\"dropped\"} %llu\n",
        dc_bus_up() ? 1 : 0, (unsigned long long)dc_bus_published(), (unsigned long long)dc_bus_received(),
        (unsigned long long)dc_bus_dropped());
}

void dc_bus_metrics_register(void)
{
    dc_metrics_add_source(render_metrics, NULL);
}

/* Parse a decimal u64 from [*p, end) up to `stop`; advances past stop. */
static bool take_u64(const char **p, const char *end, char stop, uint64_t *out)
{
    const char *q = memchr(*p, stop, (size_t)(end - *p));
    if (q == NULL || !dc_parse_u64(*p, (size_t)(q - *p), out))
        return false;
    *p = q + 1;
    return true;
}

bool dc_bus_parse(const char *raw, size_t len, dc_bus_msg_t *m, const char **sender, size_t *sender_len)
{
    const char *p = raw, *end = raw + len;
    if (len < 2 || p[1] != '|' || p[0] <= ' ' || p[0] == '|')
        return false;
    m->type = p[0];
    p += 2;
    if (!take_u64(&p, end, '|', &m->at_ms))
        return false;
    const char *s = memchr(p, '|', (size_t)(end - p));
    if (s == NULL || s == p)
        return false;
    *sender = p;
    *sender_len = (size_t)(s - p);
    m->body = s + 1;
    m->len = (size_t)(end - m->body);
    m->replay = false;
    return true;
}

/* Has this message been delivered lately? The same message can come twice: published after our
 * subscription came back and also read from the log by the catch-up that subscription triggered,
 * and every catch-up reads the whole log again. A message's bytes hold its sender and time, so
 * equal bytes are the same message; the ring remembers more than the log holds. */
static bool seen_before(dc_bus_t *b, const char *raw, size_t len)
{
    uint64_t h = dc_hash64(raw, len);
    size_t n = sizeof(b->seen) / sizeof(b->seen[0]);
    for (size_t i = 0; i < n && i < b->seen_next; i++)
        if (b->seen[i] == h)
            return true;
    b->seen[b->seen_next++ % n] = h;
    return false;
}

bool dc_bus_log_each(const redisReply *reply, void (*fn)(void *data, const char *raw, size_t len), void *data)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY)
        return false;
    for (size_t i = reply->elements; i-- > 0;) /* oldest first */
        if (reply->element[i]->type == REDIS_REPLY_STRING)
            fn(data, reply->element[i]->str, reply->element[i]->len);
    return true;
}

static void deliver(dc_bus_t *b, const char *raw, size_t len, bool replay)
{
    dc_bus_msg_t m;
    const char *sender;
    size_t slen;
    if (!dc_bus_parse(raw, len, &m, &sender, &slen)) {
        dc_log_warn("bus: ignoring a malformed message (%zu bytes)", len);
        return;
    }
    if (slen == b->sender_len && memcmp(sender, b->sender, slen) == 0)
        return; /* ours: applied when posted */
    if (seen_before(b, raw, len))
        return;
    m.replay = replay;
    atomic_fetch_add(&g_received, 1);
    b->handler(b->data, &m);
}

/* ---- sending ---- */

static void flush(dc_bus_t *b);
static void on_retry(uv_timer_t *t);

static void arm_retry(dc_bus_t *b)
{
    if (!uv_is_active((uv_handle_t *)&b->retry))
        uv_timer_start(&b->retry, on_retry, RETRY_MS, 0);
}

typedef struct sent {
    dc_bus_t *b;
    qmsg_t *m;
} sent_t;

static void on_published(void *data, int err, const redisReply *reply)
{
    sent_t *s = data;
    dc_bus_t *b = s->b;
    qmsg_t *m = s->m;
    free(s);
    if (err == 0 && reply->type != REDIS_REPLY_ERROR) {
        atomic_fetch_add(&g_published, 1);
        qmsg_free(m);
        return;
    }
    if (err == 0)
        dc_log_warn("bus: publish failed: %s", reply->str);
    if (b->closing_parts > 0) { /* closing: dropped */
        qmsg_free(m);
        return;
    }
    m->next = b->outbox; /* again when Redis answers; order does not matter (idempotent) */
    b->outbox = m;
    b->outbox_len++;
    arm_retry(b);
}

static void flush(dc_bus_t *b)
{
    while (b->outbox != NULL && dc_redis_connected(b->cmd)) {
        qmsg_t *m = b->outbox;
        char max[16], px[24];
        int ml = snprintf(max, sizeof(max), "%d", DC_BUS_LOG_MAX);
        int pl = snprintf(px, sizeof(px), "%llu", (unsigned long long)m->px);
        const char *skey = m->skey != NULL ? m->skey : b->log_key; /* untouched: "-" */
        const char *sval = m->skey == NULL ? "-" : m->sval != NULL ? m->sval : "";
        const char *dkey = m->dkey != NULL ? m->dkey : b->log_key; /* untouched: "0" */
        const char *args[9] = {b->log_key, b->channel, skey, dkey, m->wire, max, sval, px, m->dkey != NULL ? "1" : "0"};
        size_t lens[9] = {strlen(b->log_key),
                          strlen(b->channel),
                          strlen(skey),
                          strlen(dkey),
                          m->len,
                          (size_t)ml,
                          strlen(sval),
                          (size_t)pl,
                          1};
        sent_t *s = dc_malloc(sizeof(*s));
        s->b = b;
        s->m = m;
        if (dc_redis_eval(b->cmd, b->publish, on_published, s, 4, 5, args, lens) != 0) {
            free(s);
            break;
        }
        b->outbox = m->next;
        b->outbox_len--;
    }
    if (b->outbox != NULL)
        arm_retry(b);
}

static void on_wake(uv_async_t *h)
{
    dc_bus_t *b = h->data;
    pthread_mutex_lock(&g_lock);
    qmsg_t *list = b->inbox;
    b->inbox = NULL;
    b->inbox_tail = &b->inbox;
    b->inbox_len = 0;
    pthread_mutex_unlock(&g_lock);
    while (list != NULL) {
        qmsg_t *m = list;
        list = m->next;
        if (b->outbox_len >= DC_BUS_QUEUE_MAX) { /* Redis away for long: the newest win */
            qmsg_t *drop = b->outbox;
            b->outbox = drop->next;
            b->outbox_len--;
            qmsg_free(drop);
            atomic_fetch_add(&g_dropped, 1);
        }
        m->next = b->outbox;
        b->outbox = m;
        b->outbox_len++;
    }
    flush(b);
}

bool dc_bus_post(char type, uint64_t at_ms, const char *body, size_t len)
{
    return dc_bus_post_state(type, at_ms, body, len, NULL, NULL, 0, NULL);
}

bool dc_bus_post_state(char type, uint64_t at_ms, const char *body, size_t len, const char *key, const char *value,
                       uint64_t px_ms, const char *del_key)
{
    pthread_mutex_lock(&g_lock);
    dc_bus_t *b = g_bus;
    if (b == NULL) {
        pthread_mutex_unlock(&g_lock);
        return false;
    }
    char head[160];
    int hl = snprintf(head, sizeof(head), "%c|%llu|%s|", type, (unsigned long long)at_ms, b->sender);
    qmsg_t *m = dc_malloc(sizeof(*m) + (size_t)hl + len);
    memcpy(m->wire, head, (size_t)hl);
    memcpy(m->wire + hl, body, len);
    m->len = (size_t)hl + len;
    m->next = NULL;
    m->skey = key != NULL ? dc_asprintf("%s%s", b->prefix, key) : NULL;
    m->sval = key != NULL && value != NULL ? dc_strdup(value) : NULL;
    m->px = px_ms;
    m->dkey = del_key != NULL ? dc_asprintf("%s%s", b->prefix, del_key) : NULL;
    if (b->inbox_len >= DC_BUS_QUEUE_MAX) {
        qmsg_free(m);
        atomic_fetch_add(&g_dropped, 1);
    } else {
        *b->inbox_tail = m;
        b->inbox_tail = &m->next;
        b->inbox_len++;
        uv_async_send(&b->wake);
    }
    pthread_mutex_unlock(&g_lock);
    return true;
}

/* ---- receiving and catching up ---- */

static void try_replay(dc_bus_t *b);

/* The state keys are read (the sync hook) only while nothing of ours waits to be published: a
 * state we set while Redis was away must land before we read it back. */
static void run_sync(dc_bus_t *b)
{
    if (b->sync_fn == NULL || b->closing_parts > 0 || !dc_redis_connected(b->cmd) || b->outbox != NULL)
        return;
    pthread_mutex_lock(&g_lock);
    bool pending = b->inbox != NULL;
    pthread_mutex_unlock(&g_lock);
    if (!pending)
        b->sync_fn(b->sync_data);
}

static void on_poll(uv_timer_t *t)
{
    run_sync(t->data);
}

void dc_bus_set_sync(dc_bus_t *b, uint64_t every_ms, dc_bus_sync_fn fn, void *data)
{
    b->sync_fn = fn;
    b->sync_data = data;
    if (every_ms > 0)
        uv_timer_start(&b->poll, on_poll, every_ms, every_ms);
}

int dc_bus_mget(dc_bus_t *b, const char *const *keys, size_t n, dc_redis_cb cb, void *data)
{
    if (n == 0 || n > 4096 || !dc_redis_connected(b->cmd))
        return DC_EIO;
    const char **argv = dc_calloc(n + 1, sizeof(*argv));
    size_t *lens = dc_calloc(n + 1, sizeof(*lens));
    char **owned = dc_calloc(n, sizeof(*owned));
    argv[0] = "MGET", lens[0] = 4;
    for (size_t i = 0; i < n; i++) {
        owned[i] = dc_asprintf("%s%s", b->prefix, keys[i]);
        argv[i + 1] = owned[i], lens[i + 1] = strlen(owned[i]);
    }
    int rc = dc_redis_commandargv(b->cmd, cb, data, (int)n + 1, argv, lens);
    for (size_t i = 0; i < n; i++)
        free(owned[i]);
    free(owned);
    free(argv);
    free(lens);
    return rc;
}

static void deliver_replayed(void *data, const char *raw, size_t len)
{
    deliver(data, raw, len, true);
}

static void on_log(void *data, int err, const redisReply *reply)
{
    dc_bus_t *b = data;
    b->replaying = false;
    if (b->closing_parts > 0)
        return;
    if (err != 0 || reply->type != REDIS_REPLY_ARRAY) {
        arm_retry(b);
        return;
    }
    b->need_replay = false;
    dc_bus_log_each(reply, deliver_replayed, b);
    run_sync(b); /* the keys' state has the last word over the log's history */
}

static void try_replay(dc_bus_t *b)
{
    if (!b->need_replay || b->replaying || !dc_redis_connected(b->cmd))
        return;
    b->replaying = dc_redis_command(b->cmd, on_log, b, "LRANGE %s 0 -1", b->log_key) == 0;
}

static void on_message(void *data, const char *msg, size_t len)
{
    dc_bus_t *b = data;
    if (msg == NULL) { /* (re)subscribed: what was published meanwhile is only in the log */
        atomic_store(&g_up, true);
        b->need_replay = true;
        try_replay(b);
        return;
    }
    deliver(b, msg, len, false);
}

static void on_retry(uv_timer_t *t)
{
    dc_bus_t *b = t->data;
    flush(b);
    try_replay(b);
}

static void on_cmd_state(void *data, bool up)
{
    dc_bus_t *b = data;
    if (up) {
        flush(b);
        try_replay(b);
    }
}

static void on_sub_state(void *data, bool up)
{
    if (!up)
        atomic_store(&g_up, false);
}

int dc_bus_create(uv_loop_t *loop, const char *url, const char *prefix, dc_bus_handler handler, void *data,
                  dc_bus_t **out)
{
    dc_bus_t *b = dc_calloc(1, sizeof(*b));
    dc_redis_opts_t opts = {.url = url, .backoff_max_ms = 1000};
    int rc = dc_redis_create(loop, &opts, &b->cmd);
    if (rc != 0) {
        free(b);
        return rc;
    }
    rc = dc_redis_create(loop, &opts, &b->sub);
    DC_ASSERT(rc == 0); /* same url: parses */
    b->loop = loop;
    b->handler = handler;
    b->data = data;
    b->log_key = dc_asprintf("%sbus:log", prefix);
    b->prefix = dc_strdup(prefix);
    b->channel = dc_asprintf("%sbus", prefix);
    char host[64] = "host";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    for (char *p = host; *p; p++)
        if (*p == '|')
            *p = '_';
    b->sender_len =
        (size_t)snprintf(b->sender, sizeof(b->sender), "%s:%d:%08lx", host, (int)getpid(), (unsigned long)random());
    b->inbox_tail = &b->inbox;
    b->publish = dc_redis_script_register(b->cmd, PUBLISH_LUA);
    dc_redis_set_state_cb(b->cmd, on_cmd_state, b);
    dc_redis_set_state_cb(b->sub, on_sub_state, b);
    dc_redis_subscribe(b->sub, b->channel, on_message, b);
    uv_async_init(loop, &b->wake, on_wake);
    b->wake.data = b;
    uv_timer_init(loop, &b->retry);
    b->retry.data = b;
    uv_timer_init(loop, &b->poll);
    b->poll.data = b;
    pthread_mutex_lock(&g_lock);
    DC_ASSERT(g_bus == NULL);
    g_bus = b;
    pthread_mutex_unlock(&g_lock);
    *out = b;
    return 0;
}

static void free_list(qmsg_t *m)
{
    while (m != NULL) {
        qmsg_t *next = m->next;
        qmsg_free(m);
        m = next;
    }
}

static void part_closed(dc_bus_t *b)
{
    if (--b->closing_parts > 0)
        return;
    free_list(b->inbox);
    free_list(b->outbox);
    free(b->log_key);
    free(b->channel);
    free(b->prefix);
    free(b);
}

static void on_handle_closed(uv_handle_t *h)
{
    part_closed(h->data);
}

static void on_client_closed(void *data)
{
    part_closed(data);
}

void dc_bus_close(dc_bus_t *b)
{
    pthread_mutex_lock(&g_lock);
    if (g_bus == b)
        g_bus = NULL;
    pthread_mutex_unlock(&g_lock);
    atomic_store(&g_up, false);
    b->closing_parts = 5;
    uv_timer_stop(&b->retry);
    uv_timer_stop(&b->poll);
    uv_close((uv_handle_t *)&b->wake, on_handle_closed);
    uv_close((uv_handle_t *)&b->retry, on_handle_closed);
    uv_close((uv_handle_t *)&b->poll, on_handle_closed);
    dc_redis_close(b->sub, on_client_closed, b);
    dc_redis_close(b->cmd, on_client_closed, b); /* pending publishes complete (DC_EIO) first */
}
