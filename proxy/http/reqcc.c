#include "http/reqcc.h"

bool dc_reqcc_has_freshness(const dc_cc_t *cc, bool pragma_no_cache)
{
    return pragma_no_cache || cc->no_cache || cc->max_age >= 0 || cc->min_fresh >= 0 || cc->max_stale >= 0;
}

dc_reqcc_verdict_t dc_reqcc_judge(const dc_cc_t *cc, bool pragma_no_cache, uint64_t age_ms, int64_t fresh_left_ms,
                                  bool no_stale)
{
    if (cc->no_cache || pragma_no_cache)
        return DC_REQCC_REVALIDATE;
    /* max-age=0 is the usual "revalidate": any age is too old, even one under a second */
    if (cc->max_age == 0 || (cc->max_age > 0 && age_ms > (uint64_t)cc->max_age * 1000u))
        return DC_REQCC_REVALIDATE;
    if (fresh_left_ms > 0)
        return cc->min_fresh > 0 && fresh_left_ms < cc->min_fresh * 1000 ? DC_REQCC_REVALIDATE : DC_REQCC_AS_IS;
    /* stale: max-stale (a bare one accepts any staleness) unless the origin said must-revalidate */
    if (cc->max_stale >= 0 && !no_stale && -fresh_left_ms <= cc->max_stale * 1000)
        return DC_REQCC_STALE_OK;
    return DC_REQCC_AS_IS;
}
