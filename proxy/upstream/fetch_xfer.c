/*
 * One attempt of an upstream fetch on the wire: the request it sends (the caller's header lines,
 * the ring key, the method and body, curl's transport options), its curl callbacks (the head as it
 * arrives and its checks at the blank line: framing, the caller's judge, health, budget, keys,
 * retry or delivery; the body, offered to the caller with back-pressure; curl's texts that reveal
 * framing faults), and its outcome when curl is done with it (on_xfer_done: the end, a retry, a
 * failover, or a wait for the running hedge).
 */
#include "core/error.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"
#include "redis/bus.h"
#include "upstream/fetch_private.h"
#include "upstream/retry.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Small allocations never fail quietly (a lost list would also drop the request's headers). */
static struct curl_slist *slist_add(struct curl_slist *l, const char *line)
{
    struct curl_slist *n = curl_slist_append(l, line);
    if (n == NULL)
        dc_fatal("out of memory (curl_slist_append)");
    return n;
}

/* A request header line. "Name:" (nothing after the colon) is libcurl's way to suppress a header
 * it would add, and stays so; "Name: " (a header whose value is empty, as a client sent it) would be
 * dropped too, so it goes as "Name;", libcurl's spelling of an empty value. */
static struct curl_slist *slist_add_header(struct curl_slist *l, const char *line)
{
    const char *colon = strchr(line, ':');
    if (colon == NULL || colon[1] != ' ' || colon[1 + strspn(colon + 1, " \t")] != '\0')
        return slist_add(l, line);
    char *semi = dc_strndup(line, (size_t)(colon - line) + 1);
    semi[colon - line] = ';';
    l = slist_add(l, semi);
    free(semi);
    return l;
}

/* ---- curl callbacks ---- */

/* A status line: a new (possibly interim) response starts. */
static void start_head(dc_fetch_t *f, const dc_hline_t *line)
{
    dc__fetch_reset_head(f);
    f->status = line->status;
    f->reason = dc_strndup(line->value != NULL ? line->value : "", line->value_len);
}

/* A header line "Name: value": framing sees it, and it is kept with a lower-case name. */
static void store_header_line(dc_fetch_t *f, const dc_hline_t *line)
{
    dc_framing_field(&f->framing, line->name, line->name_len, line->value, line->value_len);
    if (f->nheaders == f->capheaders) {
        f->capheaders = f->capheaders ? f->capheaders * 2 : 16;
        f->headers = dc_realloc(f->headers, f->capheaders * sizeof(*f->headers));
    }
    dc_fetch_header_t *h = &f->headers[f->nheaders++];
    size_t nlen = line->name_len, vlen = line->value_len;
    /* one allocation per line: "name\0value\0" (dc__fetch_reset_head frees the name only) */
    h->name = dc_malloc(nlen + vlen + 2);
    for (size_t i = 0; i < nlen; i++)
        h->name[i] = (char)tolower((unsigned char)line->name[i]);
    h->name[nlen] = '\0';
    h->name_len = nlen;
    h->value = h->name + nlen + 1;
    if (vlen > 0)
        memcpy(h->value, line->value, vlen);
    h->value[vlen] = '\0';
    h->value_len = vlen;
}

/* A 401/403 to a request that carried a ring key: the key is set aside here (and on every instance
 * through the bus). Returns whether the key was rejected; *keys_usable = keys left usable then. */
static bool quarantine_rejected_key(dc_fetch_t *f, size_t *keys_usable)
{
    *keys_usable = 0;
    if (!((f->status == 401 || f->status == 403) && f->key_index >= 0))
        return false;
    uint64_t now = dc_now_mono_ms();
    if (dc_keyring_quarantine(f->keyring, f->key_index, now)) {
        __atomic_fetch_add(&dc_metrics_process.key_quarantines, 1, __ATOMIC_RELAXED);
        dc_log_warn("upstream %s: key #%d (id %s) answered %d; set aside for %llums", f->url, f->key_index,
                    f->keyring->ids[f->key_index], f->status, (unsigned long long)f->keyring->quarantine_ms);
        if (f->upstream_name != NULL) { /* every instance sets it aside */
            char body[256];
            int n = snprintf(body, sizeof(body), "%s\t%s", f->upstream_name, f->keyring->ids[f->key_index]);
            if (n > 0 && (size_t)n < sizeof(body))
                dc_bus_post(DC_BUS_QUARANTINE, dc_now_wall_ms(), body, (size_t)n);
        }
    }
    *keys_usable = dc_keyring_usable(f->keyring, now);
    return true;
}

/* Whether this final head goes to the caller; false: the attempt is discarded and retried after
 * f->pause_ms. A 429 is retried only after the pause it announces (every instance observes it too,
 * see dc_fleet_cooldown), and only if that still fits before the deadline: otherwise the client gets
 * the 429 itself (upstream/retry.h has the rules). */
static bool head_is_delivered(dc_fetch_t *f, bool key_rejected, size_t keys_usable, uint64_t ra)
{
    dc_retry_head_in_t rin = {.status = f->status,
                              .key_rejected = key_rejected,
                              .keys_usable = keys_usable,
                              .may_retry = dc__fetch_can_retry(f),
                              .retry_after_us = ra,
                              .now_ms = dc_now_mono_ms(),
                              .deadline_ms = f->deadline_ms};
    uint64_t pause_ms;
    if ((f->status >= 500 || f->status == 429) && dc__fetch_plan_failover(f, DC_TIER_FAIL_STATUS))
        pause_ms = 0; /* the next tier, now */
    else if (dc_retry_on_head(&rin, &pause_ms) == DC_RETRY_DELIVER || !dc__fetch_take_retry_slot(f))
        return true;
    f->discard = true;
    f->last_err = DC_EUPSTREAM;
    f->pause_ms = pause_ms;
    return false;
}

/* The blank line that ends a head: an interim head is skipped; a final one is checked (framing),
 * recorded (health, budget, keys), then either discarded for a retry or handed to the caller.
 * Returns what on_header returns to curl (0 aborts the transfer). */
static size_t end_of_head(dc_fetch_t *f, size_t len)
{
    long code = 0;
    curl_easy_getinfo(f->xfer.easy, CURLINFO_RESPONSE_CODE, &code);
    if (code > 0)
        f->status = (int)code;
    if (f->status >= 100 && f->status < 200)
        return len;                                      /* interim response: wait for the final one */
    curl_easy_setopt(f->xfer.easy, CURLOPT_VERBOSE, 1L); /* from now on curl's texts reach on_debug */
    const char *bad = f->status < 200 || f->status > 599 ? "status outside 200-599" : NULL;
    if (bad == NULL && dc_framing_finish(&f->framing) != 0)
        bad = f->framing.error;
    if (bad != NULL) {
        /* RFC 9110 15: a final status is 2xx-5xx; anything else is no answer we can relay */
        dc_log_warn("upstream %s: invalid response framing (%s)", f->url, bad);
        f->proto_err = true;
        f->last_err = DC_EPROTO;
        return 0; /* aborts the transfer; not retried: the origin would frame it the same way (the
                   * failure is recorded when the transfer ends) */
    }
    f->content_length = f->framing.chunked ? -1 : f->framing.content_length;
    f->hedge_at_ms = 0;
    if (f->health != NULL && !dc__fetch_hedge_failure_status(f->status))
        dc_latwin_record(&f->health->latency, dc_now_mono_ms(), dc_now_mono_us() - f->attempt_started_us);
    bool rejected = false; /* the caller's verdict at the head (fetch.h judge) */
    if (f->cbs.judge != NULL && !dc__fetch_hedge_failure_status(f->status)) {
        f->in_callback = true;
        rejected = f->cbs.judge(f->data, f, false) != 0;
        f->in_callback = false;
        if (f->aborted)
            return 0;
    }
    dc__fetch_record_attempt(f, f->status >= 500 || rejected);
    if (f->status >= 500 && f->health != NULL) {
        /* the tier's last error is this answer (not logged: the client gets it as it is), so a 503
         * from an open breaker names what opened it rather than an older transport failure */
        char text[48];
        snprintf(text, sizeof(text), "answered %d", f->status);
        dc_upstream_state_note_error(f->health, DC_CAUSE_OTHER, text, dc_now_wall_ms());
    }
    uint64_t ra = f->status == 429 ? dc__fetch_retry_after_us_from(f) : 0;
    dc__fetch_budget_learn_status(f, ra);
    size_t keys_usable;
    bool key_rejected = quarantine_rejected_key(f, &keys_usable);
    if (rejected && dc__fetch_judged_retry(f)) {
        f->discard = true; /* aborts this attempt; done handler starts the next one */
        f->last_err = DC_EVALIDATION;
        f->pause_ms = 0;
        return 0;
    }
    if (!rejected && !head_is_delivered(f, key_rejected, keys_usable, ra))
        return 0; /* aborts this attempt; done handler schedules the retry */
    if (f->hedge != NULL) {
        if (dc__fetch_hedge_failure_status(f->status)) { /* dropped: the running hedge may still answer well */
            f->discard = true;
            f->hedge_follow = true;
            f->last_err = DC_EUPSTREAM;
            return 0;
        }
        dc__fetch_drop_hedge(f); /* this answer came first */
    }
    f->head_us = dc_now_mono_us() - f->started_us;
    f->head_delivered = true;
    if (f->health != NULL)
        atomic_fetch_add(&f->health->answered_total, 1);
    f->state = ST_BODY;
    dc__fetch_arm_timer(f); /* from now on: the deadline, and the idle timeout between bytes */
    f->in_callback = true;
    f->cbs.on_head(f->data, f);
    f->in_callback = false;
    return f->aborted ? 0 : len;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    dc_fetch_t *f = userdata;
    size_t len = size * nitems;
    if (f->aborted || f->discard)
        return 0;
    if (f->head_delivered)
        return len; /* trailers of a chunked body: not relayed */
    dc_hline_t line;
    dc_hline_parse(buf, len, &line);
    switch (line.kind) {
    case DC_HLINE_STATUS:
        start_head(f, &line);
        return len;
    case DC_HLINE_INVALID:
        dc_framing_fail(&f->framing, "malformed header line");
        return len; /* reported at the end of the head */
    case DC_HLINE_END:
        return end_of_head(f, len);
    default:
        store_header_line(f, &line);
        return len;
    }
}

/* libcurl reports some framing faults only as text: a body longer than its Content-Length is cut
 * there and the rest dropped ("Excess found"), a malformed chunk size becomes a generic receive
 * error. Both come before the bytes they concern reach on_write. */
static int on_debug(CURL *e, curl_infotype type, char *text, size_t size, void *userdata)
{
    (void)e;
    dc_fetch_t *f = userdata;
    if (type == CURLINFO_TEXT && dc_framing_curl_text(text, size))
        f->proto_err = true;
    return 0;
}

static size_t on_write(char *buf, size_t size, size_t nmemb, void *userdata)
{
    dc_fetch_t *f = userdata;
    size_t len = size * nmemb;
    if (f->aborted || f->discard || !f->head_delivered)
        return 0;
    if (len == 0)
        return 0;
    if (f->proto_err || (dc_framing_has_body(f->status, f->head_request) &&
                         dc_framing_body(&f->framing, f->body_bytes + len, false) != 0)) {
        f->proto_err = true; /* more than announced: none of it is relayed */
        return 0;
    }
    f->in_callback = true;
    int refused = f->cbs.on_body(f->data, f, buf, len);
    f->in_callback = false;
    if (f->aborted)
        return 0;
    if (refused) {
        f->paused = true;
        f->paused_at_ms = dc_now_mono_ms();
        uv_timer_stop(&f->timer); /* time paused by the client does not count */
        return CURL_WRITEFUNC_PAUSE;
    }
    f->body_bytes += len;
    dc__fetch_arm_timer(f);
    return len;
}

/* ---- attempts ---- */

static int map_curl_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        return DC_ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return DC_ETIMEDOUT;
    default:
        return DC_EUPSTREAM;
    }
}

static void on_xfer_done(dc_curl_xfer_t *xfer, CURLcode rc)
{
    dc_fetch_t *f = xfer->data;
    DC_CHECK_MAGIC(f, FETCH_MAGIC);
    if (f->release_pending) {
        dc__fetch_release(f);
        return;
    }
    if (f->state == ST_ADOPTED)
        return; /* its own attempt, set aside: the hedge answers */
    if (f->aborted) {
        dc__fetch_release(f);
        return;
    }
    f->hedge_at_ms = 0;
    if (f->head_delivered) {
        int err = rc == CURLE_OK ? 0 : map_curl_error(rc);
        /* fewer bytes than announced (or a close before the last chunk), a malformed chunk, more
         * bytes than announced: the answer is not what its head said */
        if (f->proto_err || rc == CURLE_PARTIAL_FILE || rc == CURLE_WEIRD_SERVER_REPLY ||
            (rc == CURLE_OK && dc_framing_has_body(f->status, f->head_request) &&
             dc_framing_body(&f->framing, f->body_bytes, true) != 0))
            err = DC_EPROTO;
        if (err == DC_EPROTO)
            dc_log_warn("upstream %s: the body does not match its framing (%llu bytes, %lld announced)", f->url,
                        (unsigned long long)f->body_bytes, (long long)f->framing.content_length);
        if (err == 0 && f->cbs.judge != NULL) { /* a hedge has no judge: its parent checks itself */
            f->in_callback = true;
            int verdict = f->cbs.judge(f->data, f, true);
            f->in_callback = false;
            if (f->aborted) {
                dc__fetch_release(f);
                return;
            }
            if (verdict != 0) {
                dc__fetch_record_attempt(f, true); /* its head counted as a success; the answer was not */
                if (dc__fetch_retry_rejected(f))
                    return;
                dc__fetch_finish(f, DC_EVALIDATION);
                return;
            }
        }
        if (err != 0) {
            dc__fetch_record_attempt(f, true); /* the body broke off or lied */
            char why[128];
            snprintf(why, sizeof(why), "the body does not match its framing (%llu bytes, %lld announced)",
                     (unsigned long long)f->body_bytes, (long long)f->framing.content_length);
            dc__fetch_note_failure(f, rc, DC_CAUSE_F_HEAD | (err == DC_EPROTO ? DC_CAUSE_F_FRAMING : 0u),
                                   err == DC_EPROTO ? why : NULL);
        }
        dc__fetch_finish(f, err);
        return;
    }
    /* a discarded attempt's outcome was recorded with its head; an attempt that failed here
     * (a URL curl cannot use, our own resources) says nothing about the origin */
    if (!f->discard && (f->proto_err || dc_retry_origin_failed(rc)))
        dc__fetch_record_attempt(f, true);
    /* no head delivered: this attempt failed or is being discarded for a retry */
    int err = f->discard ? f->last_err : map_curl_error(rc);
    bool retry = f->discard && !f->hedge_follow;
    if (!f->discard && !f->proto_err && rc != CURLE_OK && rc != CURLE_WEIRD_SERVER_REPLY &&
        dc_retry_origin_failed(rc)) {
        dc_tier_fail_t why = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ? DC_TIER_FAIL_CONNECT
                             : rc == CURLE_OPERATION_TIMEDOUT                                ? DC_TIER_FAIL_TIMEOUT
                                                                                             : DC_TIER_FAIL_TRANSPORT;
        retry = dc__fetch_plan_failover(f, why) ||
                (dc_retry_curl_code(rc) && dc__fetch_can_retry(f) && dc__fetch_take_retry_slot(f));
    }
    if (f->proto_err || rc == CURLE_WEIRD_SERVER_REPLY) {
        err = DC_EPROTO; /* a malformed head: the origin would send it again */
        retry = false;
    }
    if (rc == CURLE_OK && !f->discard) {
        /* a complete response without a head should not happen; treat as bad upstream */
        retry = false;
        err = DC_EUPSTREAM;
    }
    /* failures of our own making (a URL curl cannot use, memory) are not the upstream's: the answer
     * stays the generic one, nothing is noted against the upstream */
    if (!f->discard && (f->proto_err || (rc != CURLE_OK && dc_retry_origin_failed(rc)))) {
        char why[160];
        bool framing = f->proto_err || rc == CURLE_WEIRD_SERVER_REPLY;
        if (f->proto_err)
            snprintf(why, sizeof(why), "invalid response framing (%s)",
                     f->framing.error != NULL ? f->framing.error : "malformed");
        dc__fetch_note_failure(f, rc, framing ? DC_CAUSE_F_FRAMING : 0u, f->proto_err ? why : NULL);
    }
    f->last_err = err;
    if (retry) {
        uint64_t now = dc_now_mono_ms();
        uint64_t delay = 0;
        if (!f->failover_next) { /* a new round over the tiers, after the backoff */
            delay = dc_retry_backoff_ms(f->opts.retry_backoff_ms, f->attempts - f->failovers, random());
            if (f->pause_ms > delay)
                delay = f->pause_ms;
            f->tried = 0;
        }
        f->pause_ms = 0;
        if (!dc_retry_fits(now, delay, f->deadline_ms)) {
            if (f->hedge != NULL)
                dc__fetch_follow_hedge(f, err, false, 0);
            else
                dc__fetch_finish(f, err == DC_ETIMEDOUT ? DC_ETIMEDOUT : err);
            return;
        }
        if (f->hedge != NULL) { /* the hedge first: this retry only if it fails */
            dc__fetch_follow_hedge(f, err, true, delay);
            return;
        }
        f->state = ST_BACKOFF;
        uv_timer_start(&f->timer, dc__fetch_on_deadline, delay, 0);
        return;
    }
    if (f->hedge != NULL) {
        dc__fetch_follow_hedge(f, err, false, 0);
        return;
    }
    dc__fetch_finish(f, err);
}

/* The request's header lines for this attempt (f->slist, rebuilt each attempt): the caller's lines,
 * the ring key (picked now unless a key budget chose it), and blanks for what curl would invent. */
static void build_request_headers(dc_fetch_t *f)
{
    if (f->slist)
        curl_slist_free_all(f->slist);
    f->slist = NULL;
    bool has_content_type = false;
    for (size_t i = 0; i < f->nreq_headers; i++) {
        f->slist = slist_add_header(f->slist, f->req_headers[i]);
        has_content_type = has_content_type || strncasecmp(f->req_headers[i], "content-type:", 13) == 0;
    }
    if (f->keyring != NULL && f->keyring->nkeys > 0) {
        if (f->key_index < 0) /* not chosen for a key budget */
            f->key_index = dc_keyring_pick(f->keyring, dc_now_mono_ms());
        char *line = dc_asprintf("%s: %s", f->key_header, f->keyring->keys[f->key_index]);
        f->slist = slist_add(f->slist, line);
        free(line);
    }
    /* curl adds these by default (Content-Type: application/x-www-form-urlencoded to a body the
     * client sent without one); a proxy must not invent them */
    f->slist = slist_add(f->slist, "Expect:");
    if (!has_content_type)
        f->slist = slist_add(f->slist, "Content-Type:");
}

/* Transport options: callbacks, timeouts, protocol, TLS, no automatic decoding. */
static void set_transfer_options(dc_fetch_t *f, CURL *e)
{
    curl_easy_setopt(e, CURLOPT_URL, f->attempt_url != NULL ? f->attempt_url : f->url);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->slist);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, on_debug);
    curl_easy_setopt(e, CURLOPT_DEBUGDATA, f);
    /* CURLOPT_VERBOSE (feeding on_debug only, never stderr) is turned on by end_of_head: the texts
     * on_debug looks for all concern the body, and before that curl would format a dozen lines per
     * transfer nobody reads */
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)f->opts.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     f->opts.http2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
    /* waiting to multiplex only makes sense where HTTP/2 can be negotiated (TLS + ALPN); on plain
     * HTTP/1.1 upstreams it would queue concurrent transfers behind one connection */
    if (f->opts.http2 && strncmp(f->attempt_url != NULL ? f->attempt_url : f->url, "https:", 6) == 0)
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, f->opts.tls_verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, f->opts.tls_verify ? 2L : 0L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    /* A request we must never send twice (a swap, an order: not idempotent) goes on a connection of
     * its own: libcurl resends a request by itself when a reused keep-alive connection dies before
     * any answer byte (it takes that for a stale connection the server had closed), and a server
     * that read the request and then reset would get it twice. A fresh connection is never retried
     * that way; afterwards it joins the pool like any other. */
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, f->opts.idempotent ? 0L : 1L);
    curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, 60L);
    /* pass bytes through as the origin encoded them: no automatic decoding */
    curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_TRANSFER_DECODING, 1L);
}

/* The method, and the body for the methods that carry one (an empty one when the client sent none). */
static void set_method_and_body(dc_fetch_t *f, CURL *e)
{
    if (strcmp(f->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(f->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, f->method);
        if (f->body != NULL || strcmp(f->method, "POST") == 0 || strcmp(f->method, "PUT") == 0 ||
            strcmp(f->method, "PATCH") == 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)f->body_len);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, f->body != NULL ? f->body : "");
        }
    }
}

void dc__fetch_begin_attempt(dc_fetch_t *f)
{
    f->attempts++;
    f->errbuf[0] = '\0';
    f->cause = DC_CAUSE_NONE;
    f->cause_text[0] = '\0';
    f->discard = false;
    f->hedge_follow = false;
    f->proto_err = false;
    f->attempt_started_us = dc_now_mono_us();
    f->body_bytes = 0;
    f->state = ST_ATTEMPT;
    dc__fetch_reset_head(f);
    if (f->xfer.easy == NULL)
        f->xfer.easy = dc_curl_easy_get(f->cl); /* reset already */
    else
        curl_easy_reset(f->xfer.easy);
    CURL *e = f->xfer.easy;
    if (e == NULL) {
        f->last_err = DC_EUPSTREAM;
        dc__fetch_fail_soon(f, DC_EUPSTREAM);
        return;
    }
    build_request_headers(f);
    set_transfer_options(f, e);
    set_method_and_body(f, e);
    f->xfer.cb = on_xfer_done;
    f->xfer.data = f;
    /* the whole response (every attempt, head and body) must be in by the deadline, counted from
     * the first real attempt (time spent queued for the budget is bounded by the queue timeout) */
    if (f->deadline_ms == 0)
        f->deadline_ms = dc_now_mono_ms() + f->opts.timeout_ms;
    f->attempt_deadline_ms = f->opts.attempt_timeout_ms > 0 && f->ntiers > 1
                                 ? dc_now_mono_ms() + f->opts.attempt_timeout_ms
                                 : 0; /* only moving down makes an attempt's own timeout useful */
    f->hedge_at_ms =
        f->attempts == 1 && dc__fetch_hedge_enabled(f) ? dc_now_mono_ms() + dc__fetch_hedge_delay_ms(f) : 0;
    dc__fetch_arm_timer(f);
    if (dc_curl_loop_add(f->cl, &f->xfer) != 0) {
        f->last_err = DC_EUPSTREAM;
        dc__fetch_fail_soon(f, DC_EUPSTREAM);
    }
}
