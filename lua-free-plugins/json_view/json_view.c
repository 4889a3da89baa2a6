/*
 * json_view: derived views of one cached JSON array (README.md). The plugin glue on ABI 1.3:
 * config (options table + checks), view_source (is it our view path? is the query good?),
 * view_prepare (jv_index_build on the thread pool), view_render (jv_answer through
 * host->view_write), view_free. The logic is in jv.c.
 */
#include <dexcache/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jv.h"

static const dexcache_host_t *host;
DEXCACHE_PLUGIN_EXPORT const dexcache_plugin_t dexcache_plugin;

typedef struct jview {
    char *source; /* upstream-side path (and query) of the source */
    char *view;   /* upstream-side path of the view */
    size_t view_len;
    jv_conf_t conf;
} jview_t;

/* An index, with the copy of the source when the host would not keep the body. */
typedef struct jindex {
    jv_index_t *ix;
    char *copy;
} jindex_t;

static const dexcache_option_t string_elem[] = {{.name = "", .type = DEXCACHE_OPT_STRING}, {0}};
static const dexcache_option_t options[] = {
    {"source", DEXCACHE_OPT_STRING, DEXCACHE_OPT_REQUIRED, 0, 0, NULL, "upstream path of the source (/pair/all)"},
    {"view", DEXCACHE_OPT_STRING, DEXCACHE_OPT_REQUIRED, 0, 0, NULL, "upstream path the view answers (/pairs)"},
    {"match", DEXCACHE_OPT_MAP, 0, 0, 0, NULL, "query name -> list of fields matched exactly (any of)"},
    {"min", DEXCACHE_OPT_LIST, 0, 0, 0, string_elem, "numeric fields with a min_<field> parameter"},
    {"max", DEXCACHE_OPT_LIST, 0, 0, 0, string_elem, "numeric fields with a max_<field> parameter"},
    {"sort", DEXCACHE_OPT_LIST, 0, 0, 0, string_elem, "numeric fields sort=<field> / sort=-<field> accepts"},
    {"fields", DEXCACHE_OPT_LIST, 0, 0, 0, string_elem, "names fields= may project (default: any the source has)"},
    {"max_limit", DEXCACHE_OPT_INT, 0, 1, 100000, NULL, "largest limit (default 1000)"},
    {"default_limit", DEXCACHE_OPT_INT, 0, 1, 100000, NULL, "limit when none is given (default max_limit)"},
    {0},
};

static int jv_init(const dexcache_host_t *h, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    host = h;
    return DEXCACHE_CONTINUE;
}

static void jv_instance_free(void *instance)
{
    jview_t *v = instance;
    if (v == NULL)
        return;
    jv_conf_free(&v->conf);
    free(v->source);
    free(v->view);
    free(v);
}

/* The fields of a list node, each added to the config with `flag` set. */
static int add_list(jview_t *v, const dexcache_conf_t *list, bool *flags, bool numeric, char *err, size_t errlen)
{
    for (size_t i = 0; list != NULL && i < host->conf_len(list); i++) {
        const dexcache_conf_t *el = host->conf_at(list, i, NULL);
        const char *name;
        host->conf_string(el, &name, NULL);
        int f = jv_conf_field(&v->conf, name);
        if (f < 0)
            return host->conf_error(el, err, errlen, "bad field name or more than %d fields", JV_MAX_FIELDS);
        flags[f] = true;
        if (numeric)
            v->conf.is_num[f] = true;
    }
    return DEXCACHE_CONTINUE;
}

static int build(jview_t *v, const dexcache_conf_t *c, char *err, size_t errlen)
{
    const char *s;
    host->conf_string(host->conf_get(c, "source"), &s, NULL);
    if (s[0] != '/')
        return host->conf_error(host->conf_get(c, "source"), err, errlen, "an upstream path starting with /");
    v->source = strdup(s);
    host->conf_string(host->conf_get(c, "view"), &s, NULL);
    if (s[0] != '/' || strchr(s, '?') != NULL || strcmp(s, v->source) == 0)
        return host->conf_error(host->conf_get(c, "view"), err, errlen,
                                "an upstream path starting with /, without a query, not the source's");
    v->view = strdup(s);
    v->view_len = strlen(s);
    int64_t n = 1000;
    if (host->conf_get(c, "max_limit") != NULL)
        host->conf_int(host->conf_get(c, "max_limit"), &n);
    v->conf.max_limit = (uint32_t)n;
    if (host->conf_get(c, "default_limit") != NULL)
        host->conf_int(host->conf_get(c, "default_limit"), &n);
    if ((uint32_t)n > v->conf.max_limit)
        return host->conf_error(host->conf_get(c, "default_limit"), err, errlen, "above max_limit");
    v->conf.default_limit = (uint32_t)n;
    const dexcache_conf_t *match = host->conf_get(c, "match");
    for (size_t i = 0; match != NULL && i < host->conf_len(match); i++) {
        const char *qname;
        const dexcache_conf_t *list = host->conf_at(match, i, &qname);
        if (v->conf.nmatch == JV_MAX_MATCH)
            return host->conf_error(list, err, errlen, "at most %d match parameters", JV_MAX_MATCH);
        if (strcmp(qname, "limit") == 0 || strcmp(qname, "offset") == 0 || strcmp(qname, "sort") == 0 ||
            strcmp(qname, "fields") == 0 || strncmp(qname, "min_", 4) == 0 || strncmp(qname, "max_", 4) == 0)
            return host->conf_error(list, err, errlen, "%s is a reserved query name", qname);
        jv_match_t *m = &v->conf.match[v->conf.nmatch++];
        m->qname = strdup(qname);
        size_t nf = host->conf_len(list);
        const char *one;
        if (nf == 0 && host->conf_string(list, &one, NULL) == DEXCACHE_CONTINUE)
            return host->conf_error(list, err, errlen, "a list of fields: [%s]", one);
        if (nf == 0 || nf > JV_MAX_FIELDS)
            return host->conf_error(list, err, errlen, "a list of 1 to %d fields", JV_MAX_FIELDS);
        for (size_t k = 0; k < nf; k++) {
            const dexcache_conf_t *el = host->conf_at(list, k, NULL);
            if (host->conf_string(el, &one, NULL) != DEXCACHE_CONTINUE)
                return host->conf_error(el, err, errlen, "a field name");
            int f = jv_conf_field(&v->conf, one);
            if (f < 0)
                return host->conf_error(el, err, errlen, "bad field name or more than %d fields", JV_MAX_FIELDS);
            v->conf.is_match[f] = true;
            m->fields[m->nfields++] = (unsigned)f;
        }
    }
    if (add_list(v, host->conf_get(c, "min"), v->conf.has_min, true, err, errlen) != DEXCACHE_CONTINUE ||
        add_list(v, host->conf_get(c, "max"), v->conf.has_max, true, err, errlen) != DEXCACHE_CONTINUE ||
        add_list(v, host->conf_get(c, "sort"), v->conf.is_sort, true, err, errlen) != DEXCACHE_CONTINUE)
        return DEXCACHE_ERROR;
    const dexcache_conf_t *fields = host->conf_get(c, "fields");
    if (fields != NULL) {
        size_t nf = host->conf_len(fields);
        v->conf.project = calloc(nf ? nf : 1, sizeof(char *));
        for (size_t i = 0; i < nf; i++) {
            host->conf_string(host->conf_at(fields, i, NULL), &s, NULL);
            v->conf.project[v->conf.nproject++] = strdup(s);
        }
    }
    return DEXCACHE_CONTINUE;
}

static int jv_instance_new(const dexcache_instance_args_t *a, void **instance, char *err, size_t errlen)
{
    jview_t *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return DEXCACHE_ERROR;
    if (build(v, a->config, err, errlen) != DEXCACHE_CONTINUE) {
        jv_instance_free(v); /* instance_free is owed only for a built instance */
        return DEXCACHE_ERROR;
    }
    *instance = v;
    return DEXCACHE_CONTINUE;
}

/* Our view path? (the client's path is the route prefix, then the upstream-side path) */
static bool is_view(const jview_t *v, dexcache_req_t *r)
{
    const char *path, *prefix = host->req_route(r);
    size_t len;
    if (host->req_path(r, &path, &len) != DEXCACHE_CONTINUE)
        return false;
    size_t pl = strcmp(prefix, "/") == 0 ? 0 : strlen(prefix);
    return len == pl + v->view_len && memcmp(path, prefix, pl) == 0 && memcmp(path + pl, v->view, v->view_len) == 0;
}

static int jv_view_source(dexcache_req_t *r, void *instance, void *wstate, const char **source_path)
{
    jview_t *v = instance;
    (void)wstate;
    *source_path = NULL;
    if (!is_view(v, r))
        return DEXCACHE_CONTINUE;
    const char *qs;
    size_t ql;
    host->req_query_string(r, &qs, &ql);
    jv_query_t q;
    char err[256];
    int rc = jv_query_parse(&v->conf, qs, ql, &q, err, sizeof(err));
    jv_query_free(&q);
    if (rc != 0) {
        host->respond_error(r, 400, err);
        return DEXCACHE_ANSWERED;
    }
    *source_path = v->source;
    return DEXCACHE_CONTINUE;
}

static int jv_view_prepare(void *instance, const dexcache_view_source_t *src, void **index, size_t *index_bytes)
{
    jview_t *v = instance;
    jindex_t *ji = calloc(1, sizeof(*ji));
    if (ji == NULL)
        return DEXCACHE_ERROR;
    const char *body = src->body;
    bool kept = src->size >= offsetof(dexcache_view_source_t, flags) + sizeof(src->flags) &&
                (src->flags & DEXCACHE_VIEW_BODY_KEPT) != 0;
    if (!kept) { /* a host that does not keep the body: the index keeps its own copy */
        ji->copy = malloc(src->body_len + 1);
        if (ji->copy == NULL) {
            free(ji);
            return DEXCACHE_ERROR;
        }
        memcpy(ji->copy, src->body, src->body_len);
        body = ji->copy;
    }
    char err[256];
    ji->ix = jv_index_build(&v->conf, body, src->body_len, err, sizeof(err));
    if (ji->ix == NULL) {
        host->log(&dexcache_plugin, NULL, DEXCACHE_LOG_ERROR, "%s: %s", src->path, err);
        free(ji->copy);
        free(ji);
        return DEXCACHE_ERROR;
    }
    host->log(&dexcache_plugin, NULL, DEXCACHE_LOG_INFO, "%s: %zu members indexed", src->path,
              jv_index_members(ji->ix));
    *index = ji;
    *index_bytes = sizeof(*ji) + jv_index_bytes(ji->ix) + (ji->copy != NULL ? src->body_len : 0);
    return DEXCACHE_CONTINUE;
}

static void jv_view_free(void *instance, void *index)
{
    (void)instance;
    jindex_t *ji = index;
    jv_index_free(ji->ix);
    free(ji->copy);
    free(ji);
}

static int write_out(void *ud, const char *p, size_t len)
{
    return host->view_write(ud, p, len) == DEXCACHE_CONTINUE ? 0 : -2;
}

static int jv_view_render(dexcache_req_t *r, void *instance, void *wstate, const void *index, dexcache_view_out_t *out)
{
    jview_t *v = instance;
    const jindex_t *ji = index;
    (void)wstate;
    const char *qs;
    size_t ql;
    if (host->req_query_string(r, &qs, &ql) != DEXCACHE_CONTINUE)
        return DEXCACHE_ERROR;
    jv_query_t q;
    char err[256];
    int rc = jv_query_parse(&v->conf, qs, ql, &q, err, sizeof(err));
    if (rc == 0)
        rc = jv_answer(&v->conf, ji->ix, &q, write_out, out, err, sizeof(err));
    jv_query_free(&q);
    if (rc == -1) {
        host->respond_error(r, 400, err);
        return DEXCACHE_ANSWERED;
    }
    return rc == 0 ? DEXCACHE_CONTINUE : DEXCACHE_ERROR;
}

DEXCACHE_PLUGIN_EXPORT const dexcache_plugin_t dexcache_plugin = {
    DEXCACHE_PLUGIN_HEADER,
    .name = "json_view",
    .version = "1.0.0",
    .description = "derived views (filter, sort, page, project) of one cached JSON array",
    .options = options,
    .init = jv_init,
    .instance_new = jv_instance_new,
    .instance_free = jv_instance_free,
    .view_source = jv_view_source,
    .view_prepare = jv_view_prepare,
    .view_free = jv_view_free,
    .view_render = jv_view_render,
};
