/*
 * man/dexcache.8 and man/dexcache.yaml.5, written from the same directive tables as
 * conf/REFERENCE.md (reference.c). tests/unit/test_config.c compares the committed pages with this
 * output (DC_UPDATE_REFERENCE=1 rewrites them), so the pages cannot drift from the parser.
 * Output is plain man(7) macros; nothing in it depends on the build (no date, no paths from CMake).
 */
#include "config/directive.h"

#include <stdio.h>
#include <string.h>

/* Text for a troff line: backslashes escaped, a leading '.' or '\'' guarded, `code` in bold. */
static void man_text(FILE *out, const char *s, bool line_start)
{
    bool bold = false;
    for (; *s != '\0'; s++) {
        if (line_start && (*s == '.' || *s == '\''))
            fputs("\\&", out);
        line_start = false;
        if (*s == '\\')
            fputs("\\e", out);
        else if (*s == '`') {
            fputs(bold ? "\\fR" : "\\fB", out);
            bold = !bold;
        } else if (*s == '-')
            fputs("\\-", out);
        else if (*s == '\n') {
            fputc('\n', out);
            line_start = true;
        } else
            fputc(*s, out);
    }
    if (bold)
        fputs("\\fR", out);
}

static void man_type(FILE *out, const dc__directive_t *d)
{
    if (d->type == DC__T_ENUM) {
        for (size_t i = 0; d->enum_names[i] != NULL; i++)
            fprintf(out, "%s\\fB%s\\fR", i > 0 ? " | " : "", d->enum_names[i]);
    } else if (d->type == DC__T_CUSTOM) {
        man_text(out, d->expect, false);
    } else {
        man_text(out, dc__directive_type_name(d), false);
    }
}

static void man_default(FILE *out, const dc__directive_t *d)
{
    if (d->flags & DC__D_REQUIRED) {
        fputs("required", out);
    } else if (d->dflt_doc != NULL) {
        fputs("default ", out);
        man_text(out, d->dflt_doc, false);
    } else if (d->dflt != NULL) {
        fputs("default \\fB", out);
        man_text(out, d->dflt, false);
        fputs("\\fR", out);
    } else if (dc__directive_is_collection(d)) {
        fputs("absent by default", out);
    } else {
        fputs("no default", out);
    }
}

static void man_row(FILE *out, const dc__directive_t *d, const char *key, const char *range)
{
    fputs(".TP\n.B ", out);
    man_text(out, key, false);
    fputc('\n', out);
    man_type(out, d);
    fputs("; ", out);
    man_default(out, d);
    if (range[0] != '\0') {
        fputs("; range ", out);
        man_text(out, range, false);
    }
    fputs(".\n.br\n", out);
    man_text(out, d->doc, true);
    fputc('\n', out);
}

void dc__config_write_man5(FILE *out)
{
    const dc__table_t *root = &dc__config_root_table;
    fputs(".\\\" Generated from the directive tables in proxy/config/tables.c by proxy/config/man.c:\n"
          ".\\\" do not edit. Regenerate with DC_UPDATE_REFERENCE=1 test_config.\n"
          ".TH DEXCACHE.YAML 5 \"\" \"dexcache\" \"File Formats\"\n"
          ".SH NAME\n"
          "dexcache.yaml \\- configuration file of dexcache(8)\n"
          ".SH DESCRIPTION\n"
          "The configuration is one YAML document; \\fBdexcache \\-t \\-c\\fR \\fIFILE\\fR checks it and exits.\n"
          "Unknown keys, wrong types and out\\-of\\-range values are errors, reported on one line as\n"
          "\\fIFILE\\fB:\\fILINE\\fB:\\fICOLUMN\\fB: \\fIKEY\\fB: expected \\fIWHAT\\fB, found \\fIWHAT\\fR.\n"
          "YAML anchors, aliases, tags, duplicate keys and several documents in one file are refused.\n"
          ".SH VALUE SYNTAX\n"
          ".TP\n.B duration\n"
          "500ms, 2s, 5m, 1h, 1d, fractions such as 1.5s; a bare number is seconds; finer than 1ms is refused.\n"
          ".TP\n.B size\n"
          "64KiB, 256MiB, 1GiB, 1TiB (binary); 10KB, 10MB, 1GB, 1TB (decimal); k, K, M, G, T are binary;\n"
          "a bare number is bytes.\n"
          ".TP\n.B rate\n"
          "\\fICOUNT\\fB/\\fIWINDOW\\fR: 45/1s, 2700/60s, 10/s, 600/m; COUNT >= 1.\n"
          ".TP\n.B bool\n"
          "true, false, yes, no, on, off (any case).\n"
          ".TP\n.B listen address\n"
          "127.0.0.1:8080, [::1]:8080, [::]:8080, :8080 (every IPv4 address); IP literals only; port 1..65535.\n"
          ".TP\n.B ${VAR}\n"
          "In every value (not in keys): \\fB${\\fINAME\\fB}\\fR is the environment variable, empty when unset\n"
          "(\\fBdexcache \\-t\\fR and start\\-up warn about it); \\fB${\\fINAME\\fB:\\-\\fIdefault\\fB}\\fR uses\n"
          "\\fIdefault\\fR when NAME is unset or empty; \\fB$${\\fR is a literal \\fB${\\fR.\n"
          ".PP\n"
          "An empty value (a key with nothing after it) is an empty string for string keys and an error\n"
          "elsewhere.\n"
          ".SH KEYS\n",
          out);
    for (size_t i = 0; i < root->nrows; i++) {
        const dc__directive_t *d = &root->rows[i];
        dc__table_t one = {.rows = d, .nrows = 1};
        fputs(".SS ", out);
        man_text(out, d->name, false);
        fputc('\n', out);
        dc__directive_walk(out, &one, "", man_row);
    }
    fputs(".SH FILES\n"
          ".TP\n.I /etc/dexcache/dexcache.yaml\n"
          "The configuration an installed dexcache reads when \\fB\\-c\\fR is not given.\n"
          ".SH SEE ALSO\n"
          ".BR dexcache (8);\n"
          "conf/REFERENCE.md in the source tree (the same keys, and how caching decides what it stores).\n",
          out);
}

void dc__config_write_man8(FILE *out)
{
    const dc__table_t *root = &dc__config_root_table;
    fputs(".\\\" Generated by proxy/config/man.c: do not edit. Regenerate with DC_UPDATE_REFERENCE=1 test_config.\n"
          ".TH DEXCACHE 8 \"\" \"dexcache\" \"System Administration\"\n"
          ".SH NAME\n"
          "dexcache \\- caching reverse proxy for DEX HTTP APIs\n"
          ".SH SYNOPSIS\n"
          ".B dexcache\n"
          "[\\fB\\-c\\fR \\fIFILE\\fR] [\\fB\\-t\\fR] [\\fB\\-v\\fR] [\\fB\\-h\\fR]\n"
          ".SH DESCRIPTION\n"
          "dexcache sits in front of HTTP APIs, caches their answers by the rules of its configuration\n"
          "(see \\fBdexcache.yaml\\fR(5)), coalesces identical requests, batches and rate\\-limits what goes\n"
          "upstream, and serves HTTP/1.1, HTTP/2 and event streams to clients.\n"
          ".SH OPTIONS\n"
          ".TP\n.BR \\-c \", \" \\-\\-config \" \" \\fIFILE\\fR\n"
          "Configuration file. Default: \\fIconf/dexcache.yaml\\fR when it exists in the working directory,\n"
          "else \\fI/etc/dexcache/dexcache.yaml\\fR.\n"
          ".TP\n.BR \\-t \", \" \\-\\-test\n"
          "Check the configuration and exit: 0 when valid, 1 when not. Binds nothing. Warnings (such as an\n"
          "unset \\fB${\\fIVAR\\fB}\\fR) are printed and do not fail the check.\n"
          ".TP\n.BR \\-v \", \" \\-\\-version\n"
          "Print the version (and the plugins the configuration loads) and exit.\n"
          ".TP\n.BR \\-h \", \" \\-\\-help\n"
          "Print the usage and exit.\n"
          ".SH SIGNALS\n"
          ".TP\n.B SIGHUP\n"
          "Reload the configuration (a rejected one keeps the running one) and reopen the access log.\n"
          ".TP\n.B SIGUSR1\n"
          "Reopen the access log (log rotation).\n"
          ".TP\n.B SIGTERM\n"
          "Stop accepting, drain the requests in flight, exit.\n"
          ".SH CONFIGURATION\n"
          "The top\\-level keys of \\fBdexcache.yaml\\fR(5):\n",
          out);
    for (size_t i = 0; i < root->nrows; i++) {
        const dc__directive_t *d = &root->rows[i];
        fputs(".TP\n.B ", out);
        man_text(out, d->name, false);
        fputc('\n', out);
        man_text(out, d->doc, true);
        fputc('\n', out);
    }
    fputs(".SH FILES\n"
          ".TP\n.I /etc/dexcache/dexcache.yaml\n"
          "The default configuration of an installed dexcache.\n"
          ".TP\n.I /etc/dexcache/env\n"
          "Environment for \\fB${\\fIVAR\\fB}\\fR in the configuration, read by the systemd unit.\n"
          ".TP\n.I /etc/logrotate.d/dexcache\n"
          "Rotates the access log; \\fBSIGUSR1\\fR makes dexcache reopen it.\n"
          ".SH EXIT STATUS\n"
          "0 on a clean stop or a valid configuration with \\fB\\-t\\fR; 1 otherwise.\n"
          ".SH SEE ALSO\n"
          ".BR dexcache.yaml (5),\n"
          ".BR systemctl (1)\n",
          out);
}
