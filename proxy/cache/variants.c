#include "cache/variants.h"
#include "cache/encode.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic unsigned pending_jobs;

unsigned dc_variants_pending(void)
{
    return atomic_load(&pending_jobs);
}

typedef struct variants_job {
    uv_work_t work;
    dc_cache_t *cache;
    dc_cache_entry_t *stored;
    unsigned want;
    dc_body_t out[DC_ENC_COUNT];
    bool ok[DC_ENC_COUNT];
} variants_job_t;

unsigned dc_variants_wanted(const dc_cache_entry_t *e)
{
    if (!e->compressible || e->body == NULL || e->body->body.len < DC_VARIANTS_MIN_BYTES)
        return 0;
    unsigned want = 0;
    if (e->variants[DC_ENC_GZIP] == NULL)
        want |= 1u << DC_ENC_GZIP;
    if (e->variants[DC_ENC_BR] == NULL && e->body->body.len >= DC_VARIANTS_BR_MIN)
        want |= 1u << DC_ENC_BR;
    return want;
}

unsigned dc_variants_inline_part(const dc_cache_entry_t *e, unsigned want)
{
    return e->body->body.len <= DC_VARIANTS_INLINE_MAX ? want & (1u << DC_ENC_GZIP) : 0;
}

/* Encode one representation; true when it exists and is worth keeping. */
static bool encode_one(const dc_body_t *identity, unsigned enc, dc_body_t *out)
{
    if (dc_encode_body((dc_encoding_t)enc, identity, out) != 0) {
        dc_body_dispose(out);
        return false;
    }
    if (!dc_encoding_worth_it(identity->len, out->len)) {
        dc_body_dispose(out);
        return false;
    }
    return true;
}

void dc_variants_make_inline(dc_cache_entry_t *e, unsigned want)
{
    for (unsigned enc = DC_ENC_GZIP; enc < DC_ENC_COUNT; enc++) {
        if (!(want & (1u << enc)))
            continue;
        dc_body_t out;
        if (encode_one(&e->body->body, enc, &out))
            dc_cache_entry_set_variant(e, enc, dc_shared_body_create(&out));
    }
}

static void job_work(uv_work_t *w)
{
    /* thread pool: only reads the immutable identity body and writes the job's own buffers */
    variants_job_t *j = w->data;
    for (unsigned enc = DC_ENC_GZIP; enc < DC_ENC_COUNT; enc++)
        if (j->want & (1u << enc))
            j->ok[enc] = encode_one(&j->stored->body->body, enc, &j->out[enc]);
}

static void job_after(uv_work_t *w, int status)
{
    variants_job_t *j = w->data;
    bool any = false;
    for (unsigned enc = DC_ENC_GZIP; enc < DC_ENC_COUNT; enc++)
        any |= j->ok[enc];
    if (status == 0 && any) {
        dc_cache_entry_t *succ = dc_cache_entry_clone(j->stored);
        for (unsigned enc = DC_ENC_GZIP; enc < DC_ENC_COUNT; enc++)
            if (j->ok[enc]) {
                dc_cache_entry_set_variant(succ, enc, dc_shared_body_create(&j->out[enc]));
                j->ok[enc] = false;
            }
        dc_cache_replace(j->cache, j->stored, succ, dc_now_wall_ms()); /* a newer answer wins */
        dc_cache_entry_release(succ);
    }
    for (unsigned enc = DC_ENC_GZIP; enc < DC_ENC_COUNT; enc++)
        if (j->ok[enc])
            dc_body_dispose(&j->out[enc]);
    dc_cache_entry_release(j->stored);
    free(j);
    atomic_fetch_sub(&pending_jobs, 1);
}

void dc_variants_schedule(uv_loop_t *loop, dc_cache_t *cache, dc_cache_entry_t *stored, unsigned want)
{
    variants_job_t *j = dc_calloc(1, sizeof(*j));
    j->work.data = j;
    j->cache = cache;
    j->stored = dc_cache_entry_ref(stored);
    j->want = want;
    atomic_fetch_add(&pending_jobs, 1);
    if (uv_queue_work(loop, &j->work, job_work, job_after) != 0) {
        atomic_fetch_sub(&pending_jobs, 1);
        dc_cache_entry_release(j->stored);
        free(j);
    }
}
