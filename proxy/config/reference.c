/*
 * conf/REFERENCE.md, written from the directive tables. tests/unit/test_config.c compares the
 * committed file with this output (DC_UPDATE_REFERENCE=1 rewrites it), so the reference always
 * says exactly what the parser accepts.
 */
#include "config/directive.h"

#include <stdio.h>
#include <string.h>

static const char *const preamble =
    "# dexcache configuration reference\n"
    "\n"
    "<!-- Generated from the directive tables in proxy/config/tables.c: do not edit by hand.\n"
    "     Regenerate with `DC_UPDATE_REFERENCE=1 test_config`; test_config fails when they differ. -->\n"
    "\n"
    "The configuration is one YAML document (`dexcache -t -c FILE` checks it and exits). Unknown keys,\n"
    "wrong types and out-of-range values are errors, reported on one line as\n"
    "`FILE:LINE:COLUMN: KEY: expected WHAT, found WHAT`, for example\n"
    "`conf/x.yaml:12:14: upstreams.jupiter.timeout: expected a duration (500ms, 2s, 5m, 1h), found 'soon'`.\n"
    "YAML anchors, aliases, tags, duplicate keys and several documents in one file are refused.\n"
    "\n"
    "## Value syntax\n"
    "\n"
    "| type | syntax |\n"
    "|---|---|\n"
    "| duration | `500ms`, `2s`, `5m`, `1h`, `1d`, fractions such as `1.5s`; a bare number is seconds; "
    "finer than 1ms is refused |\n"
    "| size | `64KiB`, `256MiB`, `1GiB`, `1TiB` (binary); `10KB`, `10MB`, `1GB`, `1TB` (decimal: 10KB = 10000); "
    "`10k` / `10K` / `M` / `G` / `T` are binary; a bare number is bytes |\n"
    "| rate | `COUNT/WINDOW`: `45/1s`, `2700/60s`, `10/s`, `600/m` (a bare unit is one of it); COUNT >= 1 |\n"
    "| bool | `true`, `false`, `yes`, `no`, `on`, `off` (any case) |\n"
    "| listen address | `127.0.0.1:8080`, `[::1]:8080`, `[::]:8080`, `:8080` (every IPv4 address); IP literals "
    "only; port 1..65535 |\n"
    "| list | a YAML list `[a, b]`; rows typed \"... or list\" also take a single value |\n"
    "| `${VAR}` | in every value (not in keys): `${NAME}` is the environment variable, \"\" when unset; "
    "`${NAME:-default}` uses `default` when NAME is unset or empty; `$${` is a literal `${` |\n"
    "\n"
    "An empty value (`key:` with nothing after it) is an empty string for string keys and an error "
    "elsewhere.\n"
    "Durations are stored in milliseconds, sizes in bytes.\n";

/* How the cache decides what it stores and for how long (the cache rules' keys above). */
static const char *const caching_storage =
    "\n## Caching: what is stored, and for how long (RFC 9111, RFC 9213)\n"
    "\n"
    "A GET or HEAD answer is stored under the first cache rule whose `path` prefixes the upstream path, "
    "unless one of these holds (the reason is the `detail=` of the leader's `Cache-Status`): the request "
    "had Authorization and the rule is not `public` (`authorization`); the status is 1xx, 206, 304 or not "
    "a final status at all, or no rule covers it (`status`); `Cache-Control: must-understand` on a status "
    "dexcache does not implement (`must-understand`; the understood ones are 200 203 204 300 301 302 307 "
    "308 400 404 405 410 414 451 501, and for them `no-store` is ignored); `no-store`; `private` without "
    "field names; Set-Cookie (unless a `no-cache=\"Set-Cookie\"` or `private=\"Set-Cookie\"` names it: then "
    "stored without it); `Vary` on anything but Accept-Encoding; an incomplete body.\n"
    "\n"
    "**Statuses and lifetimes.** With `respect_origin: false` (the default, tuned for the DEX APIs) the rule "
    "decides: 200 203 204 300 301 308 are fresh for `ttl`, 400 404 405 410 414 451 501 for `negative_ttl` "
    "(0 = not stored), anything else is not stored; the origin's max-age / s-maxage / Expires are not used, "
    "but its no-store, private, no-cache and must-revalidate / proxy-revalidate still are. With "
    "`respect_origin: true`, explicit freshness from the origin (s-maxage, else max-age, else Expires - Date) "
    "makes any final status storable for that lifetime (a 503 with `max-age=5` is stored; a 5xx or 429 "
    "while a usable stale copy exists is still answered with that copy); without it, `heuristic` (when on, "
    "for 200 203 204 300 301 308 404 405 410 414 451 501 or a `public` answer with a Last-Modified): that "
    "share of Date - Last-Modified, at most `heuristic_max`; else the rule's `ttl` / `negative_ttl` for their "
    "statuses (and, with `public`, for any other: `ttl` below 400, `negative_ttl` from 400). `ttl: 0` "
    "(accepted only with `respect_origin: true`) means the origin decides: an answer without explicit or "
    "heuristic freshness is not stored (`no-origin-freshness`).\n"
    "\n"
    "**Parsing.** max-age and s-maxage: the first occurrence wins, quoted values (`max-age=\"5\"`) are "
    "accepted, a value that is not a delta-seconds (`1a`, `-1`, `1.5`) makes the answer stale on arrival, "
    "values above 2147483648 are that. An invalid Expires (`0`, several Expires) or one in the past: stale "
    "on arrival. An answer stale on arrival, or sent with `no-cache` (a lifetime of 0 under respect_origin), "
    "is kept only when it has a validator (ETag or Last-Modified: it is then revalidated with the origin, "
    "If-None-Match / If-Modified-Since, before every use) or a stale window (served stale inside it). "
    "`no-cache=\"X\"` and `private=\"X\"` (field names): stored, without those header fields. "
    "`must-revalidate`, `proxy-revalidate`, `no-cache` and (with `respect_origin`) `s-maxage`, which implies "
    "proxy-revalidate, forbid any stale use (stale_while_revalidate / stale_if_error windows are 0).\n"
    "\n"
    "**Age.** The origin's `Age` is read as RFC 9111 5.1 says (of a list or several lines the first; a "
    "value with a sign, a fraction or letters is ignored; above 2147483648 it is that) and the age dexcache "
    "reports and counts is the corrected initial age of RFC 9111 4.2.3: the larger of Age + the time the "
    "origin took to answer and the apparent age, now - Date (counted from the end of Date's second, since "
    "Date has a one-second resolution). Origin and heuristic lifetimes are shortened by it; a rule's `ttl` "
    "counts from when dexcache received the answer. Hits carry `Age` = that age + the time stored.\n"
    "\n"
    "**Targeted fields (RFC 9213).** `Dexcache-Cache-Control` is addressed to dexcache alone: when it is a "
    "valid, non-empty Structured Fields dictionary it replaces Cache-Control, Expires and Pragma for "
    "dexcache's storage decision on every route, and it never reaches clients or the cache. A rule with "
    "`cdn_role: true` says that dexcache is a CDN for its clients: a valid `CDN-Cache-Control` from the origin "
    "then decides in the same way (after Dexcache-Cache-Control). An invalid dictionary is ignored as if "
    "absent; a member of the wrong type (`max-age=\"5\"`) is ignored. `forward_cdn_cache_control` says "
    "whether the origin's CDN-Cache-Control is passed on to clients (default yes). This is separate from the "
    "route's `cdn:` block, which writes dexcache's own Cache-Control / CDN-Cache-Control for the CDN in "
    "front of dexcache (Cloudflare) from the route's settings: with `cdn.cdn_cache_control: true` the "
    "route's CDN-Cache-Control replaces the origin's toward clients, whatever `forward_cdn_cache_control` "
    "says; `cdn_role` only changes what dexcache itself stores.\n";

/* Markdown table cell text: '|' would end the cell, '<' would start an HTML tag. */
static const char *const validators_doc =
    "\n"
    "## Validators and conditional requests\n"
    "\n"
    "Not configurable; how dexcache behaves (RFC 9110 sections 8.8, 13, 15.4.5; RFC 9111 sections 3.2, 4.3).\n"
    "\n"
    "- **ETag and Last-Modified.** The origin's `ETag` and `Last-Modified` reach the client unchanged on\n"
    "  every answer that carries the origin's bytes: the first (leader's) answer, hits, stale answers,\n"
    "  collapsed waiters (also while streaming from another worker) and entries read from the fleet's L2.\n"
    "- **dexcache's own ETag**, only when the origin sent none: `\"<32 hex digits of the SHA-256 of the\n"
    "  identity body>\"` (strong). The leader's answer carries it only when the whole body arrived before its\n"
    "  head went out (bodies up to 256 KiB); a larger leader's answer and the streams to waiters on other\n"
    "  workers have no ETag (the digest needs the whole body); every later answer has it.\n"
    "- **Representations dexcache makes** (gzip and br compressed here, the identity body inflated from\n"
    "  the origin's gzip, and every representation of an entry that came through L2 from an origin's\n"
    "  gzip) carry the weak form of that tag: `W/\"v1\"` for `\"v1\"`, as nginx does when it compresses. The\n"
    "  bytes are not the origin's (and may differ between instances), but the content is the same: so\n"
    "  `If-None-Match` (weak comparison) revalidates any representation with either form, while\n"
    "  `If-Match` and `If-Range` (strong comparison) never match a weak tag. An origin tag that is\n"
    "  already weak is used as it is for every representation.\n"
    "- **Preconditions answered here**, in the order of RFC 9110 13.2.2, on any 2xx answer (stored or\n"
    "  just fetched; a stored 404 is served as it is): `If-Match` (strong comparison, lists, `*`) and\n"
    "  else `If-Unmodified-Since` (an invalid date is ignored) fail with 412; `If-None-Match` (weak\n"
    "  comparison, lists, `*`) and else `If-Modified-Since` (GET/HEAD only; an invalid date, several\n"
    "  dates or a date later than now are ignored; without Last-Modified the time the entry was received\n"
    "  is used) give 304. A 304 carries only `Cache-Control`, `CDN-Cache-Control`, `Content-Location`,\n"
    "  `Date`, `ETag`, `Expires`, `Vary` and dexcache's `Age`, `Via`, `X-Cache`, `Cache-Status`,\n"
    "  `X-Request-Id`: no body, no Content-Length or Content-Type.\n"
    "- **Cache path vs pass-through.** On a cacheable request the client's conditionals are not sent\n"
    "  upstream: dexcache fetches the full answer (or revalidates its own stored copy with its own\n"
    "  validators), stores it and answers the client 304/412 from it. On a pass-through request (no\n"
    "  cache rule, hit-for-pass) they are forwarded as sent and the origin's 304/412 is passed on.\n"
    "- **Revalidation with the origin.** An expired entry is revalidated with `If-None-Match` (the\n"
    "  origin's ETag) and `If-Modified-Since` (its Last-Modified), both when both exist. A 304 updates the\n"
    "  stored headers and lifetimes, except Content-Length, Content-Encoding, Content-Range and Vary (the\n"
    "  stored body depends on them) and hop-by-hop fields. A 304 whose ETag does not match the stored one\n"
    "  (strong comparison for a strong tag, weak for a weak one), or whose Last-Modified differs, updates\n"
    "  nothing (RFC 9111 4.3.4): dexcache asks the origin again without validators and stores the new\n"
    "  answer; so does a 304 with neither validator when the stored entry has one. dexcache always fetches with\n"
    "  GET (a HEAD from a client fills the GET entry), so no upstream HEAD answer ever refreshes an entry.\n";

static void md_text(FILE *out, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else if (*s == '<')
            fputs("&lt;", out);
        else if (*s == '>')
            fputs("&gt;", out);
        else
            fputc(*s, out);
    }
}

static void write_type(FILE *out, const dc__directive_t *d)
{
    if (d->type == DC__T_ENUM) {
        for (size_t i = 0; d->enum_names[i] != NULL; i++)
            fprintf(out, "%s`%s`", i > 0 ? " \\| " : "", d->enum_names[i]);
    } else if (d->type == DC__T_CUSTOM) {
        md_text(out, d->expect);
    } else {
        md_text(out, dc__directive_type_name(d));
    }
}

static void write_default(FILE *out, const dc__directive_t *d)
{
    if (d->flags & DC__D_REQUIRED)
        fputs("**required**", out);
    else if (d->dflt_doc != NULL)
        fprintf(out, "= %s", d->dflt_doc);
    else if (d->dflt != NULL)
        fprintf(out, "`%s`", d->dflt);
    else if (dc__directive_is_collection(d))
        fputs("absent", out);
    else
        fputs("none", out);
}

static void write_row(FILE *out, const dc__directive_t *d, const char *key, const char *range)
{
    fprintf(out, "| `%s` | ", key);
    write_type(out, d);
    fputs(" | ", out);
    write_default(out, d);
    fputs(" | ", out);
    md_text(out, range);
    fputs(" | ", out);
    md_text(out, d->doc);
    fputs(" |\n", out);
}

void dc__config_write_reference(FILE *out)
{
    const dc__table_t *root = &dc__config_root_table;
    fputs(preamble, out);
    fputs("\n## Keys\n", out);
    for (size_t i = 0; i < root->nrows; i++) {
        const dc__directive_t *d = &root->rows[i];
        dc__table_t one = {.rows = d, .nrows = 1};
        fprintf(out, "\n### `%s`\n\n", d->name);
        fputs("| key | type | default | range | description |\n|---|---|---|---|---|\n", out);
        dc__directive_walk(out, &one, "", write_row);
    }
    fputs(caching_storage, out);
    fputs(validators_doc, out);
}
