/*
 * Request cache directives (RFC 9111 §5.2.1), pure: what a request's Cache-Control asks of a stored
 * answer. Unit-tested (tests/unit/test_reqcc.c).
 *
 * dexcache always honours `no-store` (the answer to that request is not stored) and
 * `only-if-cached` (504 rather than an upstream request): both can only lower the load on the
 * origin. The freshness directives (`no-cache`, `max-age`, `min-fresh`, `max-stale`, and
 * `Pragma: no-cache`) are honoured only on rules with `client_no_cache: revalidate`; under the
 * default `ignore` a client cannot make the shared upstream budget pay for its own freshness
 * wishes, and Cache-Status says `detail=client-cc-ignored`.
 */
#ifndef DC_HTTP_REQCC_H
#define DC_HTTP_REQCC_H

#include <stdbool.h>
#include <stdint.h>

#include "cache/policy.h"

typedef enum {
    DC_REQCC_AS_IS = 0,  /* the directives change nothing for this entry */
    DC_REQCC_REVALIDATE, /* go to the origin even if the entry is fresh (no-cache, max-age, min-fresh) */
    DC_REQCC_STALE_OK,   /* the entry is stale and max-stale accepts it: answer with it */
} dc_reqcc_verdict_t;

/* Does the request carry a freshness directive (honoured or ignored per the rule)? */
bool dc_reqcc_has_freshness(const dc_cc_t *cc, bool pragma_no_cache);

/*
 * Judge a stored entry for a request whose merged Cache-Control is `cc` (pragma_no_cache: Pragma:
 * no-cache was sent). `age_ms`: the entry's current age (RFC 9111 §4.2.3, origin Age included);
 * `fresh_left_ms`: time until it stops being fresh (negative: stale for that long); `no_stale`:
 * the origin forbade serving it stale (must-revalidate and the like: max-stale cannot override).
 */
dc_reqcc_verdict_t dc_reqcc_judge(const dc_cc_t *cc, bool pragma_no_cache, uint64_t age_ms, int64_t fresh_left_ms,
                                  bool no_stale);

#endif
