/* The access log line of a request, written when it is disposed (http/steps.h). */
#include "cache/encode.h"
#include "cache/key.h"
#include "cache/l2fleet.h"
#include "cache/l2codec.h"
#include "cache/policy.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"
#include "http/batch.h"
#include "http/reqcheck.h"
#include "http/request.h"
#include "http/respond.h"
#include "http/steps.h"
#include "ratelimit/clientid.h"
#include "ratelimit/gcra_fleet.h"
#include "ratelimit/local.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void dc__http_access_log(dc_request_t *r, h2o_req_t *req)
{
    if (!dc_log_access_enabled())
        return;
    char ts[32];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof(ts) - tl, ".%03ldZ", now.tv_nsec / 1000000);
    double dur_ms = (double)(dc_now_mono_us() - r->start_us) / 1000.0;
    int pathlen = (int)(req->input.path.len > 2048 ? 2048 : req->input.path.len);
    char line[3072];
    int n = snprintf(line, sizeof(line),
                     "time=%s client=%s method=%.*s path=\"%.*s\" status=%d bytes=%zu dur_ms=%.3f up_ms=%.3f "
                     "attempts=%u cache=%s rid=%s",
                     ts, dc_request_client_ip(r), (int)req->input.method.len, req->input.method.base, pathlen,
                     req->input.path.base, req->res.status, req->bytes_sent, dur_ms, (double)r->upstream_us / 1000.0,
                     r->attempts, r->x_cache ? r->x_cache : "-", r->request_id);
    if (n > 0 && (size_t)n < sizeof(line) && r->tier > 0 && r->ctx.up_rt != NULL && r->ctx.up_rt->ntiers > 1)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " tier=%u", r->tier); /* which origin answered */
    if (n > 0)
        dc_log_access_line(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}
