/*
 * h2o_bare: the ceiling for dexcache's hit path. A bare libh2o (libuv flavour) responder that answers
 * every request with one fixed body held in memory; 2 worker threads, one SO_REUSEPORT listener each.
 *   gcc -O2 -DH2O_USE_LIBUV=1 bench/h2o_bare.c -lh2o -luv -lssl -lcrypto -lz -lpthread -o h2o_bare
 *   h2o_bare PORT BODY_FILE [THREADS [CONTENT_ENCODING|- [HEAD_FILE]]]   (prints "READY PORT" once listening)
 * HEAD_FILE: "name: value" lines sent on every answer instead of the default content-type, so that
 * the ceiling sends the same bytes as the server it is compared with (bench/run captures dexcache's
 * hit head). Two values are made per answer, as dexcache does: "@id" becomes a unique 20-digit id
 * (X-Request-Id) and "@age" the seconds since start (Age). Server: is "dexcache" when a head is given.
 *
 * Proxy mode, the ceiling of the pass-through scenario: h2o_bare PORT PREFIX=URL [THREADS], for
 * example /p=http://127.0.0.1:8080/, hands every request under PREFIX to libh2o's own reverse proxy
 * (its http1client and keep-alive socket pool on the same loop): the same server stack as dexcache
 * with h2o's upstream client instead of libcurl, no cache.
 */
#include <ctype.h>
#include <h2o.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static h2o_globalconf_t gconf;
static h2o_iovec_t body;
static int port;
static const char *encoding;

/* the head sent with every answer: name (token or string), value, or a per-answer kind */
enum { VALUE_FIXED, VALUE_ID, VALUE_AGE };
typedef struct {
    const h2o_token_t *token;
    h2o_iovec_t name, value;
    int kind;
} head_line_t;
static head_line_t head[64];
static size_t nhead;
static uint64_t start_ms;
static __thread uint64_t id_counter;
static __thread unsigned id_thread;
static unsigned id_threads;

static void load_head(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    while (nhead < 64 && fgets(line, sizeof(line), f) != NULL) {
        char *colon = strchr(line, ':');
        if (colon == NULL)
            continue;
        size_t nl = colon - line, vl;
        char *v = colon + 1;
        while (*v == ' ')
            v++;
        vl = strcspn(v, "\r\n");
        for (size_t i = 0; i < nl; i++)
            line[i] = (char)tolower((unsigned char)line[i]);
        head_line_t *h = &head[nhead++];
        h->name = h2o_strdup(NULL, line, nl);
        h->value = h2o_strdup(NULL, v, vl);
        h->token = h2o_lookup_token(h->name.base, h->name.len);
        h->kind = h2o_memis(v, vl, H2O_STRLIT("@id"))    ? VALUE_ID
                  : h2o_memis(v, vl, H2O_STRLIT("@age")) ? VALUE_AGE
                                                         : VALUE_FIXED;
    }
    fclose(f);
}

static void add_head(h2o_req_t *req)
{
    for (size_t i = 0; i < nhead; i++) {
        const head_line_t *h = &head[i];
        h2o_iovec_t v = h->value;
        if (h->kind != VALUE_FIXED) {
            char *buf = h2o_mem_alloc_pool(&req->pool, 24);
            if (h->kind == VALUE_ID) {
                if (id_thread == 0)
                    id_thread = __sync_add_and_fetch(&id_threads, 1);
                v.len = (size_t)snprintf(buf, 24, "%06u%014llu", id_thread, (unsigned long long)++id_counter);
            } else {
                v.len = (size_t)snprintf(buf, 24, "%llu",
                                         (unsigned long long)((h2o_now(req->conn->ctx->loop) - start_ms) / 1000));
            }
            v.base = buf;
        }
        if (h->token != NULL)
            h2o_add_header(&req->pool, &req->res.headers, h->token, NULL, v.base, v.len);
        else
            h2o_add_header_by_str(&req->pool, &req->res.headers, h->name.base, h->name.len, 0, NULL, v.base, v.len);
    }
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    static h2o_generator_t gen = {NULL, NULL};
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = body.len;
    if (nhead > 0)
        add_head(req);
    else
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    if (encoding != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_ENCODING, NULL, encoding, strlen(encoding));
    h2o_start_response(req, &gen);
    h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
    return 0;
}

static void on_accept(uv_stream_t *listener, int status)
{
    if (status != 0)
        return;
    uv_tcp_t *conn = malloc(sizeof(*conn));
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(conn, 1);
    h2o_accept(listener->data, h2o_uv_socket_create((uv_stream_t *)conn, (uv_close_cb)free));
}

static void *worker(void *arg)
{
    uv_loop_t loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t actx = {.ctx = &ctx, .hosts = gconf.hosts};
    uv_tcp_t listener;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4096) != 0) {
        perror("h2o_bare: bind/listen");
        exit(1);
    }
    uv_loop_init(&loop);
    h2o_context_init(&ctx, &loop, &gconf);
    uv_tcp_init(&loop, &listener);
    uv_tcp_open(&listener, fd);
    listener.data = &actx;
    if (uv_listen((uv_stream_t *)&listener, 4096, on_accept) != 0)
        exit(1);
    uv_run(&loop, UV_RUN_DEFAULT);
    return arg;
}

static void start_workers(int nthreads)
{
    pthread_t th[64];
    for (int i = 0; i < nthreads && i < 64; i++)
        pthread_create(&th[i], NULL, worker, NULL);
    printf("READY %d\n", port);
    fflush(stdout);
    pthread_join(th[0], NULL);
}

/* PREFIX=URL: libh2o's reverse proxy under PREFIX, nothing else. */
static int proxy_main(const char *spec, int nthreads)
{
    static h2o_url_t upstream;
    const char *eq = strchr(spec, '=');
    char prefix[256];
    if (eq == NULL || (size_t)(eq - spec) >= sizeof(prefix) || h2o_url_parse(eq + 1, SIZE_MAX, &upstream) != 0)
        return fprintf(stderr, "h2o_bare: proxy mode takes PREFIX=http://HOST:PORT/PATH\n"), 2;
    memcpy(prefix, spec, eq - spec);
    prefix[eq - spec] = '\0';
    h2o_config_init(&gconf);
    h2o_hostconf_t *host = h2o_config_register_host(&gconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_proxy_config_vars_t pc = {.io_timeout = 30000, .keepalive_timeout = 60000};
    h2o_proxy_register_reverse_proxy(h2o_config_register_path(host, prefix, 0), &upstream, &pc);
    start_workers(nthreads);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return fprintf(stderr,
                       "usage: %s PORT BODY_FILE [THREADS [CONTENT_ENCODING|- [HEAD_FILE]]]\n"
                       "       %s PORT PREFIX=URL [THREADS]\n",
                       argv[0], argv[0]),
               2;
    port = atoi(argv[1]);
    int nthreads = argc > 3 ? atoi(argv[3]) : 2;
    /* glibc would otherwise grow and trim each thread arena around every request's pool chunk
     * (sysmalloc + madvise showed at the top of a profile): keep the freed memory instead */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
    if (argv[2][0] == '/' && strchr(argv[2], '=') != NULL)
        return proxy_main(argv[2], nthreads);
    encoding = argc > 4 && strcmp(argv[4], "-") != 0 ? argv[4] : NULL;
    if (argc > 5)
        load_head(argv[5]);
    FILE *f = fopen(argv[2], "rb");
    if (f == NULL)
        return perror(argv[2]), 1;
    fseek(f, 0, SEEK_END);
    body.len = ftell(f);
    body.base = malloc(body.len);
    rewind(f);
    if (fread(body.base, 1, body.len, f) != body.len)
        return 1;
    fclose(f);
    h2o_config_init(&gconf);
    if (nhead > 0)
        gconf.server_name = h2o_iovec_init(H2O_STRLIT("dexcache"));
    uv_loop_t clock;
    uv_loop_init(&clock);
    start_ms = uv_now(&clock);
    h2o_hostconf_t *host = h2o_config_register_host(&gconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_create_handler(path, sizeof(h2o_handler_t))->on_req = on_req;
    start_workers(nthreads);
    return 0;
}
