#!/usr/bin/env python3
"""bench/perf_split.py PERF_SCRIPT_OUTPUT CPU_US_PER_REQ OUT_JSON SERVICE_BINARY

Splits the service's CPU time during a tokenize load into HTTP, JSON, crypto,
database, logging and the rest, from `perf script` output of a
`perf record --call-graph dwarf` of the service process (bench/run.sh
--profile). Every sample goes to the first frame, walking from the leaf
towards main, that belongs to a known library or to a known part of
cardvault: time in libc or in the kernel counts for whoever called it (a
send() from libpq is database time, a malloc() from jansson is JSON time).
Samples with no such frame (scheduler, thread start-up, unwinding failures)
are "unattributed". Writes OUT_JSON (bench/report.py renders it); CPU µs per
request is the share times CPU_US_PER_REQ (from /proc/PID/stat on an
unprofiled run)."""
import json
import re
import subprocess
import sys
from collections import Counter

LIBS = [  # (dso substring, category)
    ("libmicrohttpd", "HTTP (libmicrohttpd)"),
    ("libjansson", "JSON (jansson)"),
    ("libcrypto", "crypto (libcrypto)"),
    ("libssl", "crypto (libcrypto)"),
    ("libpq", "database (libpq)"),
]
# cardvault's own functions, by source file (from `nm -l` on the binary).
OWN_FILES = [
    (r"http_server|router|auth|ratelimit", "HTTP (libmicrohttpd)"),
    (r"json_codec", "JSON (jansson)"),
    (r"envelope|keyring|keyprovider|token\.c", "crypto (libcrypto)"),
    (r"store_", "database (libpq)"),
    (r"log\.c|metrics", "logging + metrics"),
]
# Helpers that count for their caller, like libc: wiping, checked allocation.
PASS_FILES = r"secbuf"
ORDER = ["HTTP (libmicrohttpd)", "JSON (jansson)", "crypto (libcrypto)", "database (libpq)",
         "logging + metrics", "cardvault (other)", "unattributed (libc, kernel)"]

FRAME = re.compile(r"^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")


def samples(path):
    cur = None
    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                if cur is not None:
                    yield cur
                cur = None
                continue
            if not line[0].isspace():
                cur = []
                continue
            m = FRAME.match(line)
            if m and cur is not None:
                sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
                cur.append((sym, m.group(2)))
    if cur is not None:
        yield cur


def symbol_files(binary):
    """symbol -> source file of the service binary (needs -g, which release has)."""
    out = subprocess.run(["nm", "-l", "--defined-only", binary], capture_output=True, text=True)
    files = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] in "tT":
            files[parts[2]] = parts[3].rsplit(":", 1)[0]
    return files


def classify(frames, exe_hint, files):
    for sym, dso in frames:
        for sub, cat in LIBS:
            if sub in dso:
                return cat
        if exe_hint in dso:
            src = files.get(sym) or files.get(sym.split(".")[0], "")
            if re.search(PASS_FILES, src):
                continue
            for pat, cat in OWN_FILES:
                if re.search(pat, src):
                    return cat
            return "cardvault (other)"
    return "unattributed (libc, kernel)"


def main():
    path, us_per_req, out, binary = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
    exe_hint = binary.rsplit("/", 1)[-1]
    files = symbol_files(binary)
    cats, leaf_dso, kernel_syms = Counter(), Counter(), Counter()
    n = 0
    for frames in samples(path):
        if not frames:
            continue
        n += 1
        cats[classify(frames, exe_hint, files)] += 1
        real = [f for f in frames if f[1] != "inlined"] or frames
        leaf = real[0][1]
        leaf_dso["kernel" if "kernel" in leaf else leaf.rsplit("/", 1)[-1]] += 1
        if "kernel" in leaf:
            kernel_syms[real[0][0]] += 1
    if n == 0:
        print("profile: no samples", file=sys.stderr)
        sys.exit(1)
    split = [{"category": c, "share": cats[c] / n, "cpu_us_per_req": cats[c] / n * us_per_req}
             for c in ORDER if cats[c]]
    res = {"samples": n, "cpu_us_per_req": us_per_req, "split": split,
           "self_by_dso": {k: v / n for k, v in leaf_dso.most_common(12)},
           "top_kernel_symbols": {k: v / n for k, v in kernel_syms.most_common(10)}}
    with open(out, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    print(json.dumps({"samples": n, "split": {s["category"]: round(s["share"], 3) for s in split}}),
          file=sys.stderr)


if __name__ == "__main__":
    main()
