#!/usr/bin/env python3
"""DC_ASSERT / DC_CHECK_MAGIC arguments carry no side effects (style.md habit 17): no function call
(sizeof and a few pure macros aside), no assignment, no ++ or --. Asserts stay on in release builds,
but an assert is read as a check: the work it would hide belongs in a statement of its own.

Usage: check_asserts.py DIR...   (exit 1 listing file:line of each offender)"""
import os
import re
import sys

ASSERTS = ("DC_ASSERT", "DC_CHECK_MAGIC")
# core/list.h predicates are static inline reads (no side effect)
PURE = {"sizeof", "offsetof", "_Alignof", "__builtin_expect", "dc_list_empty", "dc_list_node_linked"}
CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
ASSIGN = re.compile(r"(?<![=!<>+\-*/%&|^])=(?!=)|\+\+|--|[+\-*/%&|^]=|<<=|>>=")


def strip_comments_and_strings(src):
    out, i, n = [], 0, len(src)
    while i < n:
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * src.count("\n", i, j))
            i = j
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src[i] in "\"'":
            q, j = src[i], i + 1
            while j < n and src[j] != q:
                j += 2 if src[j] == "\\" else 1
            out.append(q + q)
            i = j + 1
        else:
            out.append(src[i])
            i += 1
    return "".join(out)


def check_file(path):
    src = strip_comments_and_strings(open(path, encoding="utf-8", errors="replace").read())
    bad = []
    for m in re.finditer(r"\b(%s)\s*\(" % "|".join(ASSERTS), src):
        line_start = src.rfind("\n", 0, m.start()) + 1
        if src[line_start:m.start()].lstrip().startswith("#define"):
            continue
        depth, j = 1, m.end()
        while j < len(src) and depth:
            depth += {"(": 1, ")": -1}.get(src[j], 0)
            j += 1
        arg = src[m.end():j - 1]
        calls = [c for c in CALL.findall(arg) if c not in PURE]
        # a cast "(type)x" is not a call: only identifiers directly followed by "(" count
        if calls or ASSIGN.search(arg):
            bad.append("%s:%d: %s(%s)" % (path, src.count("\n", 0, m.start()) + 1, m.group(1),
                                          " ".join(arg.split())))
    return bad


def main(dirs):
    bad = []
    for d in dirs:
        for root, _, files in os.walk(d):
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    bad += check_file(os.path.join(root, f))
    for b in bad:
        print(b)
    if bad:
        print("%d assert(s) with a side effect (or a call): move the work out of the assert" % len(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["proxy"]))
