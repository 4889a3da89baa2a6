/* libFuzzer target for answer validation (cache/validate.h): the input is a JSON pointer, a
 * newline, then an upstream body. The pointer is tried as each kind of validate rule and as
 * payload_time; the validator must never crash, overread or leak, must give a NUL-terminated reason
 * exactly when it refuses, and a pointer that resolves must resolve to a node of the parsed body. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/validate.h"

static bool in_tree(const cJSON *root, const cJSON *want)
{
    if (root == want)
        return true;
    for (const cJSON *c = root->child; c != NULL; c = c->next)
        if (in_tree(c, want))
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t plen = nl != NULL ? (size_t)(nl - data) : size;
    char *ptr = malloc(plen + 1);
    memcpy(ptr, data, plen);
    ptr[plen] = '\0';
    size_t blen = nl != NULL ? size - plen - 1 : 0;
    char *body = malloc(blen ? blen : 1);
    if (blen)
        memcpy(body, nl + 1, blen);

    /* the validator's own notion of JSON: one value, nothing after it but whitespace */
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, blen, &end, 0);
    while (root != NULL && end < body + blen && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (root != NULL && end != body + blen) {
        cJSON_Delete(root);
        root = NULL;
    }
    const cJSON *v = dc_json_pointer_get(root, ptr);
    if (v != NULL && (!dc_json_pointer_valid(ptr) || !in_tree(root, v)))
        abort();
    int64_t ms;
    if (dc_payload_time_ms(v, &ms) == 0 && ms < 0)
        abort();

    if (dc_json_pointer_valid(ptr)) {
        dc_config_validate_rule_t vr = {.pointer = ptr};
        dc_config_cache_rule_t rule = {0};
        rule.validate_rules = &vr;
        rule.nvalidate_rules = 1;
        rule.validate_body = true;
        char why[512];
        for (int kind = 0; kind < 4; kind++) {
            vr.absent = kind == 0;
            vr.present = kind == 1;
            vr.nonempty_array = kind == 2;
            if (kind == 3) { /* payload age instead */
                rule.nvalidate_rules = 0;
                rule.payload_time = ptr;
                rule.max_payload_age_ms = 30000;
            }
            int rc = dc_validate_body(&rule, body, blen, 1717577725000ULL, why, sizeof(why));
            if (strnlen(why, sizeof(why)) == sizeof(why) || (rc == 0) != (why[0] == '\0'))
                abort();
            if (root == NULL && rc == 0)
                abort(); /* a body that does not parse never passes */
            /* a member named twice on the pointer's way is refused whatever the rule (validate.c) */
            bool twice = rc != 0 && strstr(why, "named twice") != NULL;
            if (kind == 0 && root != NULL && !twice && (rc == 0) != (v == NULL))
                abort();
            if (kind == 1 && root != NULL && !twice && (rc == 0) != (v != NULL))
                abort();
        }
    }
    cJSON_Delete(root);
    free(body);
    free(ptr);
    return 0;
}
