/*
 * Responses made by dexcache itself: reason phrases and the JSON error body
 * {"error":"...","status":N,"request_id":"..."} (design: header contract); an upstream's failure
 * adds "upstream" (its name) and "cause" (what failed, without secrets) after "status".
 */
#ifndef DC_HTTP_RESPOND_H
#define DC_HTTP_RESPOND_H

#include <h2o.h>
#include <stddef.h>

/* Reason phrase for a status code ("OK", "Bad Gateway", ...; "Unknown" otherwise). */
const char *dc_http_reason(int status);

/* Write the JSON error body into buf (NUL-terminated); returns its length. `request_id` may be NULL.
 * The message is JSON-escaped. Pure. */
size_t dc_error_json(char *buf, size_t cap, int status, const char *message, const char *request_id);
/* The same with "upstream" and "cause" (each left out when NULL). Pure. */
size_t dc_error_json_upstream(char *buf, size_t cap, int status, const char *message, const char *upstream,
                              const char *cause, const char *request_id);

/* Answer `req` with the JSON error (Content-Type: application/json, Cache-Control: no-store,
 * X-Request-Id when given). Headers already added to req->res.headers are kept. */
void dc_respond_error(h2o_req_t *req, int status, const char *message, const char *request_id);
/* The same with "upstream" and "cause" (dc_error_json_upstream). */
void dc_respond_error_upstream(h2o_req_t *req, int status, const char *message, const char *upstream, const char *cause,
                               const char *request_id);

/*
 * libh2o answers some requests itself before any handler runs (413 over max_request_entity_size,
 * 400 for a broken chunked body or Content-Length, 417 for an unknown Expect), with a plain-text
 * body, through the host's fallback path. This registers a filter on that path which turns them
 * into the JSON error above (Cache-Control: no-store, X-Request-Id when `next_id` is given; it
 * writes a fresh id into buf, at least 72 bytes, and returns its length). Handlers are registered
 * on "/" and never answer through the fallback path, so their responses are untouched.
 */
void dc_respond_h2o_errors_as_json(h2o_hostconf_t *host, size_t (*next_id)(h2o_req_t *req, char *buf));

#endif
