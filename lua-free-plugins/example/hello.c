/* hello: adds one response header, taken from its config, to every answer of its routes. */
#include <dexcache/plugin.h>
#include <stdlib.h>
#include <string.h>

static const dexcache_host_t *host;

typedef struct {
    char *name, *value;
} hello_t;

static const dexcache_option_t options[] = {
    {"header", DEXCACHE_OPT_STRING, DEXCACHE_OPT_REQUIRED, 0, 0, NULL, "response header name"},
    {"value", DEXCACHE_OPT_STRING, DEXCACHE_OPT_REQUIRED, 0, 0, NULL, "its value"},
    {0},
};

static int hello_init(const dexcache_host_t *h, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    host = h; /* valid for the life of the process */
    return DEXCACHE_CONTINUE;
}

static int hello_new(const dexcache_instance_args_t *a, void **instance, char *err, size_t errlen)
{
    const char *name, *value; /* valid during this call only: copy them */
    host->conf_string(host->conf_get(a->config, "header"), &name, NULL);
    host->conf_string(host->conf_get(a->config, "value"), &value, NULL);
    if (strchr(name, ' ') != NULL)
        return host->conf_error(host->conf_get(a->config, "header"), err, errlen, "no spaces in a header name");
    hello_t *h = malloc(sizeof(*h));
    h->name = strdup(name);
    h->value = strdup(value);
    *instance = h;
    return DEXCACHE_CONTINUE;
}

static void hello_free(void *instance)
{
    hello_t *h = instance;
    free(h->name), free(h->value), free(h);
}

static int hello_deliver(dexcache_req_t *r, void *instance, void *wstate)
{
    hello_t *h = instance;
    (void)wstate;
    return host->resp_set_header(r, h->name, strlen(h->name), h->value, strlen(h->value));
}

DEXCACHE_PLUGIN_EXPORT const dexcache_plugin_t dexcache_plugin = {
    DEXCACHE_PLUGIN_HEADER,      .name = "hello",    .version = "1.0.0",        .description = "adds a response header",
    .options = options,          .init = hello_init, .instance_new = hello_new, .instance_free = hello_free,
    .on_deliver = hello_deliver,
};
