#include "upstream/retry.h"
#include "cache/policy.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

bool dc_retry_allowed(bool idempotent, unsigned attempts, unsigned retries, bool aborted)
{
    return idempotent && attempts <= retries && !aborted;
}

bool dc_retry_status(int status)
{
    return status == 502 || status == 503 || status == 504;
}

bool dc_retry_curl_code(int curl_code)
{
    switch ((CURLcode)curl_code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

bool dc_retry_origin_failed(int curl_code)
{
    switch ((CURLcode)curl_code) {
    case CURLE_OK:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_FAILED_INIT:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_ABORTED_BY_CALLBACK:
    case CURLE_WRITE_ERROR:
    case CURLE_READ_ERROR:
    case CURLE_UNKNOWN_OPTION:
        return false;
    default:
        return true;
    }
}

uint64_t dc_retry_backoff_ms(uint64_t base_ms, unsigned attempts, long draw)
{
    unsigned n = attempts > 0 ? attempts - 1 : 0;
    unsigned shift = n < 10 ? n : 10;
    uint64_t d = base_ms << shift;
    long r = draw % 1000;
    if (r < 0)
        r += 1000;
    double jitter = 0.5 + (double)r / 1000.0;
    return (uint64_t)((double)d * jitter);
}

bool dc_retry_fits(uint64_t now_ms, uint64_t wait_ms, uint64_t deadline_ms)
{
    return now_ms + wait_ms < deadline_ms;
}

uint64_t dc_retry_after_us(const dc_fetch_header_t *hs, size_t n, uint64_t now_wall_ms)
{
    uint64_t now_s = now_wall_ms / 1000;
    for (size_t i = 0; i < n; i++) {
        const dc_fetch_header_t *h = &hs[i];
        if (h->name_len == 11 && memcmp(h->name, "retry-after", 11) == 0) {
            char *end;
            unsigned long long v = strtoull(h->value, &end, 10);
            if (end != h->value && *end == '\0')
                return (uint64_t)v * 1000000;
            int64_t t = dc_http_date_parse(h->value, h->value_len);
            if (t > 0 && (uint64_t)t > now_s)
                return ((uint64_t)t - now_s) * 1000000;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const dc_fetch_header_t *h = &hs[i];
        if (h->name_len == 17 && memcmp(h->name, "x-ratelimit-reset", 17) == 0) {
            unsigned long long t = strtoull(h->value, NULL, 10);
            if (t * 1000 > now_wall_ms)
                return (t * 1000 - now_wall_ms) * 1000; /* to the millisecond, not whole seconds */
        }
    }
    return 0;
}

uint64_t dc_retry_429_pause_ms(uint64_t retry_after_us)
{
    return (retry_after_us ? retry_after_us : 1000000) / 1000;
}

dc_retry_head_t dc_retry_on_head(const dc_retry_head_in_t *in, uint64_t *pause_ms)
{
    *pause_ms = 0;
    if (!in->may_retry)
        return DC_RETRY_DELIVER;
    if (in->key_rejected && in->keys_usable > 0)
        return DC_RETRY_AGAIN;
    if (dc_retry_status(in->status))
        return DC_RETRY_AGAIN;
    if (in->status == 429) {
        uint64_t p = dc_retry_429_pause_ms(in->retry_after_us);
        if (dc_retry_fits(in->now_ms, p, in->deadline_ms)) {
            *pause_ms = p;
            return DC_RETRY_AFTER_PAUSE;
        }
    }
    return DC_RETRY_DELIVER;
}
