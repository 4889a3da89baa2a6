/*
 * libFuzzer target for the config loader: YAML text -> tree -> directive tables -> snapshot.
 * Any input must end in either a snapshot (released here) or one error line; never a crash, a
 * leak, an abort or output. On success the two lookups are exercised on the result too.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -D_GNU_SOURCE -Iproxy \
 *     proxy/core/error.c proxy/core/log.c $(ls proxy/config/[a-z]*.c) tests/fuzz/fuzz_config.c -lyaml -o fuzz_config
 *   ./fuzz_config -max_total_time=60 tests/fuzz/corpus/config
 */
#include "config/config.h"
#include "core/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const paths[] = {"/", "", "/jup", "/jup/price/v3?ids=a", "/jupiter", "/x/y/z"};
    dc_config_t *cfg = NULL;
    char err[DC_CONFIG_ERRLEN];
    int rc = dc_config_load_string("fuzz.yaml", (const char *)data, size, &cfg, err, sizeof(err));
    if (rc != 0) {
        /* the contract: no snapshot, one line, NUL-terminated */
        if (cfg != NULL || rc != DC_ECONFIG || memchr(err, '\0', sizeof(err)) == NULL || strchr(err, '\n') != NULL)
            abort();
        return 0;
    }
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        const dc_config_route_t *r = dc_config_route_match(cfg, paths[i], strlen(paths[i]));
        if (r != NULL && r->upstream == NULL)
            abort(); /* every route resolves its upstream */
        if (r != NULL)
            (void)dc_config_cache_rule_match(r, paths[i], strlen(paths[i]));
    }
    dc_config_release(dc_config_ref(cfg));
    dc_config_release(cfg);
    return 0;
}
