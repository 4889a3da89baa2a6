/*
 * h2o_bare: the ceiling for dexcache's hit path. A bare libh2o (libuv flavour) responder that answers
 * every request with one fixed body held in memory; 2 worker threads, one SO_REUSEPORT listener each.
 *   gcc -O2 -DH2O_USE_LIBUV=1 bench/h2o_bare.c -lh2o -luv -lssl -lcrypto -lz -lpthread -o h2o_bare
 *   h2o_bare PORT BODY_FILE [THREADS [CONTENT_ENCODING]]   (prints "READY PORT" once listening)
 */
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

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    static h2o_generator_t gen = {NULL, NULL};
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = body.len;
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

int main(int argc, char **argv)
{
    if (argc < 3)
        return fprintf(stderr, "usage: %s PORT BODY_FILE [THREADS]\n", argv[0]), 2;
    port = atoi(argv[1]);
    int nthreads = argc > 3 ? atoi(argv[3]) : 2;
    encoding = argc > 4 ? argv[4] : NULL;
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
    /* glibc would otherwise grow and trim each thread arena around every request's pool chunk
     * (sysmalloc + madvise showed at the top of a profile): keep the freed memory instead */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
    h2o_config_init(&gconf);
    h2o_hostconf_t *host = h2o_config_register_host(&gconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_create_handler(path, sizeof(h2o_handler_t))->on_req = on_req;
    pthread_t th[64];
    for (int i = 0; i < nthreads && i < 64; i++)
        pthread_create(&th[i], NULL, worker, NULL);
    printf("READY %d\n", port);
    fflush(stdout);
    pthread_join(th[0], NULL);
    return 0;
}
