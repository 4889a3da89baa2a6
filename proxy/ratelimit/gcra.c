#include "ratelimit/gcra.h"

void dc_gcra_params_init(dc_gcra_params_t *p, uint32_t limit, uint64_t window_ms, uint32_t burst)
{
    p->limit = limit > 0 ? limit : 1;
    p->window_ms = window_ms > 0 ? window_ms : 1;
    p->emission_us = p->window_ms * 1000 / p->limit;
    if (p->emission_us == 0)
        p->emission_us = 1;
    p->burst = burst > 0 ? burst : p->limit;
}

void dc_gcra_check(const dc_gcra_params_t *p, uint64_t tat_us, uint64_t now_us, dc_gcra_result_t *out)
{
    uint64_t tau = p->emission_us * p->burst;
    uint64_t tat = tat_us > now_us ? tat_us : now_us;
    uint64_t new_tat = tat + p->emission_us;
    uint64_t allow_at = new_tat > tau ? new_tat - tau : 0;
    if (now_us < allow_at) {
        out->allowed = false;
        out->remaining = 0;
        out->retry_after_us = allow_at - now_us;
        out->reset_us = tat - now_us;
        out->new_tat_us = tat_us;
        return;
    }
    out->allowed = true;
    out->retry_after_us = 0;
    out->remaining = (now_us - allow_at) / p->emission_us;
    out->reset_us = new_tat - now_us;
    out->new_tat_us = new_tat;
}
