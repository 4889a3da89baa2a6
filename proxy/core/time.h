/* Clocks. Pure logic never calls these directly: it takes "now" as a parameter (injected time). */
#ifndef DC_CORE_TIME_H
#define DC_CORE_TIME_H

#include <stdint.h>
#include <time.h>

/* Monotonic milliseconds / microseconds (CLOCK_MONOTONIC). */
static inline uint64_t dc_now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t dc_now_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Wall clock milliseconds since the epoch (CLOCK_REALTIME). */
static inline uint64_t dc_now_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#endif
