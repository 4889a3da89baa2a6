/*
 * Cache entries a fill builds: from the response head (stored headers, CDN headers, tags,
 * lifetimes from the policy's decision), complete (representations, our digest ETag), the vary
 * record of a variant, and the successor of a stored entry after a 304 (RFC 9111 §4.3.4).
 */
#include "cache/encode.h"
#include "cache/growing.h"
#include "cache/l2codec.h"
#include "cache/policy.h"
#include "cache/variants.h"
#include "cache/vary.h"
#include "core/error.h"
#include "core/time.h"
#include "http/cdn.h"
#include "http/conditional.h"
#include "http/cors.h"
#include "http/condserve.h"
#include "http/fill_private.h"
#include "http/request.h"
#include "http/resphdr.h"
#include "http/vary.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RFC 9111 §4.3.4: does the origin's 304 select the stored `old` for update? An ETag in it must
 * match the stored one (strong comparison when it is strong, weak when weak); else a Last-Modified
 * in it must equal the stored one; a 304 with neither selects the stored response only when that
 * has no validator either (we then sent none: nothing of ours was confirmed). */
bool dc__fill_reval_304_selects(const dc_cache_entry_t *old, const dc_fetch_header_t *hs, size_t n)
{
    size_t el, ll;
    const char *et = dc_resphdr_find(hs, n, "etag", &el);
    const char *lm = dc_resphdr_find(hs, n, "last-modified", &ll);
    if (et != NULL) {
        dc_etag_t got, have;
        if (old->origin_etag == NULL || !dc_etag_parse(et, el, &got) ||
            !dc_etag_parse(old->origin_etag, strlen(old->origin_etag), &have))
            return false;
        return got.weak ? dc_etag_weak_eq(&got, &have) : dc_etag_strong_eq(&got, &have);
    }
    if (lm == NULL)
        return old->origin_etag == NULL && old->origin_last_modified == NULL;
    int64_t t = dc_http_date_parse(lm, ll);
    return t >= 0 && old->origin_last_modified != NULL &&
           dc_http_date_parse(old->origin_last_modified, strlen(old->origin_last_modified)) == t;
}

/* The origin's CDN-Cache-Control stays with us: the rule says so, or the route sends its own. */
bool dc__fill_drop_cdn_cache_control(const dc_fill_t *fill)
{
    return (fill->ctx.rule != NULL && !fill->ctx.rule->forward_cdn_cache_control) ||
           (fill->ctx.route->cdn.enabled && fill->ctx.route->cdn.cdn_cache_control);
}

/* An entry the origin can revalidate is worth keeping past its windows: a 304 is cheaper than a
 * full answer. It stays one more lifetime (at least 10 s) after it stops being usable as is. */
static uint64_t keep_until_with_validators(const dc_cache_entry_t *e, const dc_policy_decision_t *d)
{
    if (e->origin_etag == NULL && e->origin_last_modified == NULL)
        return d->keep_until_ms;
    uint64_t life = d->fresh_until_ms > e->stored_at_ms ? d->fresh_until_ms - e->stored_at_ms : 0;
    uint64_t extra = life > 10000 ? life : 10000;
    return d->keep_until_ms + extra;
}

/* Lifetimes and flags of a new entry, from the policy's decision. */
static void apply_decision(dc_cache_entry_t *e, const dc_policy_decision_t *d, uint64_t now)
{
    e->stored_at_ms = now;
    e->fresh_until_ms = d->fresh_until_ms;
    e->swr_until_ms = d->swr_until_ms;
    e->sie_until_ms = d->sie_until_ms;
    e->keep_until_ms = keep_until_with_validators(e, d);
    e->no_stale = d->no_stale;
    e->negative = d->negative;
    e->origin_age_s = d->origin_age_s;
}

/* Fields a 304 never changes in a stored entry (RFC 9111 §3.2): Content-Length, and the ones the
 * stored body depends on (it is kept decoded, with our own Content-Encoding and Vary per
 * representation; a 304 describes no range). Hop-by-hop and unstored ones are dc_resphdr_store's. */
static bool kept_from_304(const dc_fetch_header_t *h, const char *conn, size_t conn_len)
{
    static const char *const fixed[] = {"content-length", "content-encoding", "content-range", "vary"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (h->name_len == strlen(fixed[i]) && memcmp(h->name, fixed[i], h->name_len) == 0)
            return false;
    return dc_resphdr_store(h, conn, conn_len);
}

/* Headers of a revalidated entry: the stored ones, replaced by same-named ones from the 304. */
static dc_fetch_header_t *merge_304_headers(const dc_cache_entry_t *old, const dc_fetch_header_t *hs, size_t n,
                                            bool drop_cors, size_t *out_n)
{
    size_t conn_len;
    const char *conn = dc_resphdr_find(hs, n, "connection", &conn_len);
    dc_fetch_header_t *m = dc_calloc(old->nheaders + n + 1, sizeof(*m));
    size_t k = 0;
    for (size_t i = 0; i < old->nheaders; i++) {
        const dc_cache_hdr_t *h = &old->headers[i];
        bool replaced = false;
        for (size_t j = 0; j < n && !replaced; j++)
            replaced = hs[j].name_len == h->name_len && memcmp(hs[j].name, h->name, h->name_len) == 0 &&
                       kept_from_304(&hs[j], conn, conn_len);
        if (!replaced)
            m[k++] = (dc_fetch_header_t){(char *)h->name, h->name_len, (char *)h->value, h->value_len};
    }
    for (size_t j = 0; j < n; j++)
        if (kept_from_304(&hs[j], conn, conn_len) && !(drop_cors && dc_cors_is_cors_header(hs[j].name, hs[j].name_len)))
            m[k++] = hs[j];
    *out_n = k;
    return m;
}

/* The successor of fill->stale after a 304: same body (shared, not copied), merged headers,
 * lifetimes decided again from them. */
dc_cache_entry_t *dc__fill_build_revalidated_entry(dc_fill_t *fill, dc_fetch_t *f)
{
    const dc_cache_entry_t *old = fill->stale;
    size_t n, mn;
    const dc_fetch_header_t *hs = dc_fetch_headers(f, &n);
    dc_fetch_header_t *m =
        merge_304_headers(old, hs, n, dc_config_cors_for(fill->ctx.snap->cfg, fill->ctx.route) != NULL, &mn);
    uint64_t now = dc_now_wall_ms();
    dc_policy_request_t preq = {.method_cacheable = true};
    dc_policy_response_t pres;
    dc_resphdr_policy_view(old->status, m, mn, &pres);
    pres.response_delay_ms = dc_fetch_head_us(f) / 1000u;
    if (old->vary != NULL && !pres.vary_star)
        pres.vary_other = false; /* a variant: its names were checked when it was stored */
    dc_policy_decide(fill->ctx.rule, &preq, &pres, now, &fill->decision);
    dc_cache_hdr_t *kept = dc_calloc(mn ? mn : 1, sizeof(*kept));
    for (size_t i = 0; i < mn; i++)
        kept[i] = (dc_cache_hdr_t){h2o_lookup_token(m[i].name, m[i].name_len), m[i].name, m[i].name_len, m[i].value,
                                   m[i].value_len};
    dc_cache_entry_t *e = dc_cache_entry_create(fill->key, fill->key_len, old->status, kept, mn, old->tags, old->ntags,
                                                dc_shared_body_ref(old->body));
    free(kept);
    free(m);
    for (unsigned i = DC_ENC_GZIP; i < DC_ENC_COUNT; i++)
        if (old->variants[i] != NULL)
            dc_cache_entry_set_variant(e, i, dc_shared_body_ref(old->variants[i]));
    e->compressible = old->compressible;
    memcpy(e->etag, old->etag, sizeof(e->etag));
    e->etag_len = old->etag_len;
    e->etag_enc = old->etag_enc;
    apply_decision(e, &fill->decision, now);
    e->route_metric = old->route_metric;
    return e;
}

/* The head's fields an entry stores, into `kept` (room for n + 5): our Vary when the answer has
 * variants, then the origin's minus hop-by-hop, unstored, stripped and per-representation ones
 * (and those the route's CDN headers replace). Returns how many. */
static size_t keep_head_fields(dc_fill_t *fill, const dc_fetch_header_t *hs, size_t n, bool with_cdn,
                               dc_cache_hdr_t *kept)
{
    size_t conn_len;
    const char *conn = dc_resphdr_find(hs, n, "connection", &conn_len);
    size_t k = 0;
    bool drop_cors = dc_config_cors_for(fill->ctx.snap->cfg, fill->ctx.route) != NULL;
    if (fill->vary_key != NULL) /* the origin's Vary names but Accept-Encoding, sent with the answer */
        kept[k++] = (dc_cache_hdr_t){H2O_TOKEN_VARY, "vary", 4, fill->vary_names, fill->vary_names_len};
    for (size_t i = 0; i < n; i++) {
        if (!dc_resphdr_store(&hs[i], conn, conn_len))
            continue;
        if (drop_cors && dc_cors_is_cors_header(hs[i].name, hs[i].name_len))
            continue; /* the route's CORS policy answers for them, per request (http/cors.h) */
        if (with_cdn && hs[i].name_len == 13 && memcmp(hs[i].name, "cache-control", 13) == 0)
            continue; /* replaced by the route's CDN policy */
        if (hs[i].name_len == 17 && memcmp(hs[i].name, "cdn-cache-control", 17) == 0 &&
            dc__fill_drop_cdn_cache_control(fill))
            continue;
        if (fill->decision.strip_fields && dc_resphdr_cc_strips(hs, n, fill->decision.cc_source, &hs[i]))
            continue; /* a qualified no-cache / private named it: never replayed from the cache */
        if ((hs[i].name_len == 16 && memcmp(hs[i].name, "content-encoding", 16) == 0) ||
            (hs[i].name_len == 4 && memcmp(hs[i].name, "vary", 4) == 0))
            continue; /* the entry describes the identity body; serve.c adds both per representation */
        kept[k].token = h2o_lookup_token(hs[i].name, hs[i].name_len);
        kept[k].name = hs[i].name;
        kept[k].name_len = hs[i].name_len;
        kept[k].value = hs[i].value;
        kept[k].value_len = hs[i].value_len;
        k++;
    }
    return k;
}

/* The route's CDN headers (the non-empty ones of `cdn`) appended to `kept` at k. Returns the new count. */
static size_t add_cdn_fields(const dc_cdn_headers_t *cdn, dc_cache_hdr_t *kept, size_t k)
{
    const char *names[4] = {"cache-control", "cdn-cache-control", "surrogate-key", "cache-tag"};
    const char *values[4] = {cdn->cache_control, cdn->cdn_cache_control, cdn->surrogate_key, cdn->cache_tag};
    for (int i = 0; i < 4; i++) {
        if (values[i][0] == '\0')
            continue;
        kept[k].name = names[i];
        kept[k].name_len = strlen(names[i]);
        kept[k].token = h2o_lookup_token(names[i], kept[k].name_len);
        kept[k].value = values[i];
        kept[k].value_len = strlen(values[i]);
        k++;
    }
    return k;
}

/* An entry from the response head: stored headers (+ CDN headers), tags, the identity body (still
 * growing while the fill runs), lifetimes. No validator yet: the digest needs the whole body. */
dc_cache_entry_t *dc__fill_entry_from_head(dc_fill_t *fill, dc_fetch_t *f)
{
    size_t n;
    const dc_fetch_header_t *hs = dc_fetch_headers(f, &n);
    bool with_cdn = fill->ctx.route->cdn.enabled;
    dc_cdn_headers_t cdn;
    if (with_cdn)
        dc_cdn_headers_build(&fill->ctx.route->cdn, fill->ctx.rule, fill->decision.negative,
                             (const char *const *)fill->tags, fill->ntags, &cdn);
    dc_cache_hdr_t *kept = dc_calloc(n + 5, sizeof(*kept));
    size_t k = keep_head_fields(fill, hs, n, with_cdn, kept);
    if (with_cdn)
        k = add_cdn_fields(&cdn, kept, k);
    dc_shared_body_t *identity = fill->inflating ? fill->sb_ident : fill->sb;
    size_t et_len;
    bool origin_tag = dc_resphdr_find(hs, n, "etag", &et_len) != NULL;
    dc_cache_entry_t *e =
        dc_cache_entry_create(fill->vary_key != NULL ? fill->vary_key : fill->key,
                              fill->vary_key != NULL ? fill->vary_key_len : fill->key_len, dc_fetch_status(f), kept, k,
                              (const char *const *)fill->tags, fill->ntags, dc_shared_body_ref(identity));
    free(kept);
    if (with_cdn)
        dc_cdn_headers_dispose(&cdn);
    const dc_cache_hdr_t *ct = dc_cache_entry_header(e, "content-type", 12);
    e->compressible = ct != NULL && dc_encoding_compressible_type(ct->value, ct->value_len) &&
                      identity->body.len >= DC_VARIANTS_MIN_BYTES;
    apply_decision(e, &fill->decision, dc_now_wall_ms());
    e->route_metric = fill->ctx.route_metric;
    /* the origin's tag names the bytes it sent (gzip when we inflate); our digest names identity */
    e->etag_enc = fill->inflating && origin_tag ? DC_ENC_GZIP : DC_ENC_IDENTITY;
    return e;
}

/* The complete entry: as from the head, plus the gzip representation and, when the origin sent no
 * ETag, our strong one (a digest of the identity body). */
dc_cache_entry_t *dc__fill_build_entry(dc_fill_t *fill, dc_fetch_t *f)
{
    dc_cache_entry_t *e = dc__fill_entry_from_head(fill, f);
    if (fill->inflating)
        dc_cache_entry_set_variant(e, DC_ENC_GZIP, dc_shared_body_ref(fill->sb)); /* as the origin sent it */
    if (fill->sha_on) {
        unsigned char digest[32];
        mbedtls_sha256_finish_ret(&fill->sha, digest);
        dc_cache_entry_set_etag(e, digest);
        memcpy(fill->digest_tag, e->etag, e->etag_len + 1);
    }
    return e;
}

/* The vary record for variant `e` under the primary key (cache/store.h keeps an existing one with
 * the same names, and with it the other variants; other names replace it and drop them). */
void dc__fill_store_vary_record(dc_fill_t *fill, const dc_cache_entry_t *e)
{
    dc_cache_hdr_t h = {H2O_TOKEN_VARY, "vary", 4, fill->vary_names, fill->vary_names_len};
    size_t plen = dc_vary_primary_len(fill->key, fill->key_len);
    dc_cache_entry_t *rec =
        dc_cache_entry_create(fill->key, plen, 0, &h, 1, (const char *const *)fill->tags, fill->ntags, NULL);
    rec->is_vary = true;
    rec->no_stale = true;
    rec->vary_max = fill->ctx.rule->max_variants;
    rec->stored_at_ms = e->stored_at_ms;
    rec->keep_until_ms = e->keep_until_ms;
    rec->route_metric = e->route_metric;
    dc_cache_insert(fill->ctx.worker->cache, rec, dc_now_wall_ms());
    dc_cache_entry_release(rec);
}