#!/usr/bin/env python3
"""bench/report.py RESULTS_JSON STORE_PG_C PGBENCH_DIR OUT_JSON

Called by bench/run.sh. Adds the ratios to the limits, the performance targets
(TARGETS below) and a check that the pgbench scripts still run the service's SQL to the raw
results, writes OUT_JSON and prints the Markdown report on stdout."""
import json
import re
import statistics
import subprocess
import sys

# Ratio targets: (workload, limit run prefix, {clients: minimum median ratio}).
# A pair is reported at every client count the run measured both at; only
# the client counts named here have a verdict.
RATIO_TARGETS = [
    ("tokenize", "limit_insert", {16: 1.5, 64: 2.5}),
    ("tokenize", "limit_batch", {64: 0.5}),
    ("detokenize", "limit_insert", {16: 1.2, 64: 2.0}),
    ("read", "limit_select", {16: 1.0, 64: 1.0}),
]
CPU_US_MAX = {"tokenize": 40.0, "read": 25.0, "detokenize": 50.0}  # service process only
WORKLOADS = ("tokenize", "read", "detokenize")
# Workloads measured in the rounds for information: ratios to their limits,
# no target. elements: the hosted card field's tokenize (bench/elements.lua).
INFO_RATIOS = [
    ("elements", "limit_insert"),
    ("elements", "limit_batch"),
]
INFO_WORKLOADS = ("elements",)
ALL_WORKLOADS = WORKLOADS + INFO_WORKLOADS
LABEL = {"elements": "elements (hosted field)"}
P99_HALF_MAX_MS = 5.0
RSS_MAX_MIB = 32.0
LIMIT_NAMES = {
    "limit_insert": "(a) pgbench INSERT, 1 row/tx",
    "limit_batch": "(d) pgbench INSERT, 64 rows/tx (rows/s)",
    "limit_select": "(b) pgbench PK SELECT",
    "limit_http": "(c) bare libmicrohttpd",
}
SHORT = {"limit_insert": "1-row insert", "limit_batch": "64-row insert", "limit_select": "PK select",
         "limit_http": "bare MHD"}

# How each pgbench script writes the service statement's parameters.
TOK_INSERT = "'tok_' || lpad(:ta::text, 11, '0') || lpad(:tb::text, 11, '0')"
FP_INSERT = "'fp_' || lpad(:fa::text, 11, '0') || lpad(:fb::text, 11, '0')"
TOK_READ = "'tok_' || lpad(:i::text, 22, '0')"
TOK_INSERT64 = "'tok_' || lpad(:ta::text, 11, '0') || lpad((:tb::bigint * 64 + g)::text, 11, '0')"
FP_INSERT64 = "'fp_' || lpad(:fa::text, 11, '0') || lpad((:fb::bigint * 64 + g)::text, 11, '0')"
PARAMS = {
    # metadata and expiry as a tokenize without them sends: '{}' and ''
    "insert_token": [":merchant_id", TOK_INSERT, ":format_version", ":dek_id", ":nonce",
                     ":ciphertext", ":brand", ":bin", ":last4", FP_INSERT, ":created_at",
                     "'{}'", "''"],
    "insert_token_x64": [":merchant_id", TOK_INSERT64, ":format_version", ":dek_id", ":nonce",
                         ":ciphertext", ":brand", ":bin", ":last4", FP_INSERT64, ":created_at",
                         "'{}'", "''"],
    "get_token": [":merchant_id", TOK_READ],
    "audit_head_lock": [],
    # hash and MAC are computed in C by the service; here any 32 bytes that
    # differ per event do (the database stores them, it cannot check them)
    "audit_append_rows": ["(:seq + 1)", ":int8", "ARRAY[:actor]", "ARRAY[:merchant_id]",
                          "ARRAY[" + TOK_READ + "]", "ARRAY[:request_id]", "ARRAY[:action]",
                          "ARRAY[:outcome]", "ARRAY[NULL]",
                          "ARRAY[sha256(:hash::bytea || convert_to(:request_id, 'UTF8'))]",
                          "ARRAY[sha256(:mac::bytea || :hash::bytea)]"],
}
# Limit (d) is the service's one-row INSERT with 64 rows as its row source
# (tokens and fingerprints differ per row through g).
DERIVED = {"insert_token_x64": ("insert_token", "FROM data_keys WHERE",
                                "FROM data_keys, generate_series(0, 63) AS g WHERE")}
SCRIPTS = {  # script: statement names, in order
    "insert.sql": ["insert_token"],
    "insert64.sql": ["insert_token_x64"],
    "select.sql": ["get_token"],
    "detokenize.sql": ["get_token", "audit_head_lock", "audit_append_rows"],
}


def service_sql(store_sources):
    """The statements of the store's SQL files (colon-separated paths) after
    the preprocessor, by name."""
    inc = subprocess.run(["pg_config", "--includedir"], capture_output=True, text=True).stdout.strip()
    text = ""
    for path in store_sources.split(":"):
        cmd = ["cc", "-E", "-P", "-Iinclude", "-I" + (inc or "/usr/include/postgresql"), path]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            return {}
        text += out.stdout
    found = {}
    lit = r'"(?:[^"\\]|\\.)*"'
    for name in PARAMS:
        if name in DERIVED:
            continue
        m = re.search(r'\{\s*"' + name + r'"\s*,\s*((?:' + lit + r'\s*)+),', text)
        if m:
            parts = re.findall(lit, m.group(1))
            found[name] = "".join(bytes(p[1:-1], "utf-8").decode("unicode_escape") for p in parts)
    for name, (base, old, new) in DERIVED.items():
        if base in found and old in found[base]:
            found[name] = found[base].replace(old, new, 1)
    return found


def as_pgbench(sql, params):
    """The service statement as the pgbench scripts must spell it."""
    if any(int(n) > len(params) for n in re.findall(r"\$(\d+)", sql)):
        return None  # the statement has new parameters: the script needs an update
    # ':' inside the service's literals would be read by pgbench as a variable
    # (literals are matched left to right, so the text between two literals
    # is never taken for one)
    sql = re.sub(r"'([^']*)'", lambda m: "E'" + m.group(1).replace(":", "\\072") + "'"
                 if ":" in m.group(1) else m.group(0), sql)
    return re.sub(r"\$(\d+)", lambda m: params[int(m.group(1)) - 1], sql)


def sql_check(store_sources, pgbench_dir):
    stmts = service_sql(store_sources)
    result = {}
    for script, names in SCRIPTS.items():
        with open(f"{pgbench_dir}/{script}") as f:
            lines = [re.sub(r"\s*\\gset$", "", l.strip().rstrip(";")) for l in f
                     if l.strip() and not l.startswith("\\")
                     and l.strip().rstrip(";") not in ("BEGIN", "COMMIT")]
        for name, line in zip(names, lines):
            key = f"{script}:{name}"
            if name not in stmts:
                result[key] = None
            else:
                result[key] = as_pgbench(stmts[name], PARAMS[name]) == line
    return result


def other(run):
    o = (run.get("machine") or {}).get("other_load_cores")
    return "–" if o is None else f"{o:.2f}"


def fmt(x, nd=0):
    if x is None:
        return "–"
    return f"{x:,.{nd}f}"


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return statistics.median(xs) if xs else None


def stats(xs):
    """{median, min, max, rounds} of the per-round values (None kept in rounds)."""
    got = [x for x in xs if x is not None]
    return {"median": median(got), "min": min(got) if got else None,
            "max": max(got) if got else None, "rounds": xs}


def spread(st, nd=2):
    if st["median"] is None:
        return "–"
    return f"{st['median']:,.{nd}f} ({st['min']:,.{nd}f}–{st['max']:,.{nd}f})"


RUN_NAME = re.compile(r"^(?P<prefix>.+)_c(?P<c>\d+)_r(?P<r>\d+)$")


def by_round(runs, prefix, c):
    """{round: run} of the runs named PREFIX_cC_rN."""
    out = {}
    for k, x in runs.items():
        m = RUN_NAME.match(k)
        if m and m["prefix"] == prefix and int(m["c"]) == c:
            out[int(m["r"])] = x
    return out


def client_counts(runs, prefix):
    return sorted({int(m["c"]) for m in map(RUN_NAME.match, runs) if m and m["prefix"] == prefix})


def summary(runs, prefix, c):
    """Medians over the rounds of one workload or limit at one client count."""
    rr = by_round(runs, prefix, c)
    if not rr:
        return None
    rounds = sorted(rr)
    col = lambda f: [f(rr[n]) for n in rounds]
    lat = lambda q: col(lambda x: x["latency_ms"].get(q))
    return {
        "prefix": prefix, "clients": c, "rounds": rounds,
        "rps": stats(col(lambda x: x["rps"])),
        "latency_ms": {q: median(lat(q)) for q in ("p50", "p99", "p999", "mean")},
        "cpu_us_per_req": stats(col(lambda x: x.get("cpu_us_per_req"))),
        "rss_kib": median(col(lambda x: x.get("rss_kib"))),
        "errors": sum(col(lambda x: x["errors"])),
        "other_load_cores": stats(col(lambda x: (x.get("machine") or {}).get("other_load_cores"))),
    }


def peak(summ, wl):
    """The best median req/s of a workload over the client counts: (rps, clients)."""
    got = [(x["rps"]["median"], x["clients"]) for x in summ.values()
           if x["prefix"] == wl and x["rps"]["median"]]
    return max(got) if got else (None, None)


def import_ratios(runs, summ):
    """cardvault import's rows/s against the same run's tokenize peak (the API
    path for the same cards) and its best one-row and 64-row INSERT limits
    (each the best median over the client counts)."""
    imp = runs.get("import")
    if not imp:
        return None
    tok, tok_c = peak(summ, "tokenize")
    ins, ins_c = peak(summ, "limit_insert")
    bat, bat_c = peak(summ, "limit_batch")
    return {
        "rows_per_s": imp["rps"], "batch": imp["batch"],
        "tokenize_peak_rps": tok, "tokenize_peak_clients": tok_c,
        "ratio_to_tokenize_peak": imp["rps"] / tok if tok else None,
        "limit": "limit_insert", "limit_rps": ins, "limit_clients": ins_c,
        "ratio_to_limit_insert": imp["rps"] / ins if ins else None,
        "limit_batch_rows_per_s": bat, "limit_batch_clients": bat_c,
        "ratio_to_limit_batch": imp["rps"] / bat if bat else None,
        "peak_rss_kib": imp["peak_rss_kib"], "cpu_us_per_row": imp["cpu_us_per_row"],
        "postgres_cpu_us_per_row": imp.get("postgres_cpu_us_per_row"),
        "errors": imp["errors"],
    }


def ratio_rows(runs, clients, dsync):
    """Every workload/limit pair at every client count both were measured at:
    the per-round ratios (each round's service rate over the same round's
    limit), their median and min–max, and the verdict on the median."""
    pairs = [(wl, lim, tg) for wl, lim, tg in RATIO_TARGETS]
    pairs += [(wl, lim, {}) for wl, lim in INFO_RATIOS]
    pairs += [(wl, "limit_http", {}) for wl in WORKLOADS]
    rows = []
    for wl, lim, tg in pairs:
        for c in clients:
            s, l = by_round(runs, wl, c), by_round(runs, lim, c)
            rounds = sorted(set(s) & set(l))
            if not rounds:
                continue
            per = [{"round": n, "rps": s[n]["rps"], "limit_rps": l[n]["rps"],
                    "ratio": s[n]["rps"] / l[n]["rps"] if l[n]["rps"] else None,
                    "dsync_8k_writes_per_s": dsync.get(n),
                    "other_load_cores": [(s[n].get("machine") or {}).get("other_load_cores"),
                                         (l[n].get("machine") or {}).get("other_load_cores")]}
                   for n in rounds]
            st = stats([x["ratio"] for x in per])
            target = tg.get(c)
            rows.append({
                "workload": wl, "clients": c, "limit": lim, "per_round": per,
                "ratio": st["median"], "ratio_min": st["min"], "ratio_max": st["max"],
                "rps_median": median(x["rps"] for x in per),
                "limit_rps_median": median(x["limit_rps"] for x in per),
                "target": target,
                "meets_target": None if target is None else (st["median"] is not None
                                                             and st["median"] >= target),
            })
    return rows


def main():
    res_path, store_sources, pgbench_dir, out_path = sys.argv[1:5]
    with open(res_path) as f:
        r = json.load(f)
    runs = r["runs"]
    clients = r["settings"]["clients"]
    dsync = {x["round"]: x.get("dsync_8k_writes_per_s") for x in r.get("rounds", [])}

    summ = {}
    for prefix in ALL_WORKLOADS + tuple(LIMIT_NAMES):
        for c in client_counts(runs, prefix):
            summ[f"{prefix}_c{c}"] = summary(runs, prefix, c)
    ratios = ratio_rows(runs, clients, dsync)
    cpu = []
    for wl in WORKLOADS:
        for c in client_counts(runs, wl):
            st = summ[f"{wl}_c{c}"]["cpu_us_per_req"]
            cpu.append({"workload": wl, "clients": c, "cpu_us_per_req": st["median"],
                        "min": st["min"], "max": st["max"], "rounds": st["rounds"],
                        "target": CPU_US_MAX[wl],
                        "meets_target": st["median"] is not None and st["median"] <= CPU_US_MAX[wl]})
    half = []
    for wl in WORKLOADS:
        h = runs.get(f"{wl}_half")
        if h:
            half.append({"workload": wl, "clients": h["clients"], "target_rps": h["target_rate"],
                         "rps": h["rps"], "p50_ms": h["latency_ms"]["p50"],
                         "p99_ms": h["latency_ms"]["p99"], "p999_ms": h["latency_ms"]["p999"],
                         "errors": h["errors"],
                         "meets_target": h["latency_ms"]["p99"] < P99_HALF_MAX_MS})
    r["summary"] = summ
    r["ratios"] = ratios
    r["cpu_per_request"] = cpu
    r["half_load"] = half
    r["import"] = import_ratios(runs, summ)
    r["sql_matches_service"] = sql_check(store_sources, pgbench_dir)
    peak_mib = r["service_peak_rss_kib"] / 1024
    judged = [x for x in ratios if x["meets_target"] is not None]
    missing = [f"{wl} vs {lim} at {c} clients" for wl, lim, tg in RATIO_TARGETS for c in tg
               if not any(x["workload"] == wl and x["limit"] == lim and x["clients"] == c
                          for x in ratios)]
    r["targets"] = {
        "basis": "median of the per-round figures",
        "ratios_met": all(x["meets_target"] for x in judged),
        "ratios_not_measured": missing,
        "cpu_per_request_met": all(x["meets_target"] for x in cpu),
        "p99_half_load_met": all(x["meets_target"] for x in half),
        "peak_rss_met": peak_mib < RSS_MAX_MIB,
        "no_errors": r["errors"] == 0 and r["verification"]["missing"] == 0
                     and (runs.get("import") or {}).get("errors", 0) == 0,
    }
    with open(out_path, "w") as f:
        json.dump(r, f, indent=2)
        f.write("\n")

    m, st = r["machine"], r["settings"]
    p = print
    ok = lambda b: "✅" if b else "❌"
    rounds = r.get("rounds", [])
    p(f"## cardvault benchmark ({r['mode']}) — {r['date']}")
    p()
    p(f"Machine: {m['nproc']} cores ({m['cpu']}), {m['mem_gib']} GiB, {m['kernel']}, "
      f"disk {fmt(m.get('dsync_8k_writes_per_s'))} O_DSYNC 8 KiB writes/s at the start "
      f"(per round: {', '.join(fmt(x.get('dsync_8k_writes_per_s')) for x in rounds)}), "
      f"load average before/after {m['loadavg_before']} / {m['loadavg_after']}. "
      f"PostgreSQL {st['postgres_version']} "
      f"({', '.join(f'{k}={v}' for k, v in st['postgres'].items())}); wrk {st['wrk']} "
      f"-t{st['wrk_threads']}, pgbench -j{st['pgbench_threads']} -M prepared; "
      f"{st['rounds']} rounds, {st['duration_s']} s per measurement. Service {r['git']}: "
      f"http threads {st['service_http_threads']} (0 = a thread per connection), "
      f"db pool {st['service_db_pool']}, db writers {st.get('service_db_writers')}"
      f"{(', ' + st['service_env'].strip()) if st['service_env'].strip() else ''}. "
      f"Command: `{r['command'].strip()}` ({r['elapsed_s']} s).")
    p()
    p("### Targets (each the median of the per-round figures; spread = min–max over the rounds)")
    p()
    p("| target | clients | median (min–max) | per round | verdict |")
    p("|---|---:|---:|---|---|")
    for x in ratios:
        if x["target"] is None:
            continue
        p(f"| {x['workload']} ÷ {SHORT[x['limit']]} ≥ {x['target']}× | {x['clients']} | "
          f"**{fmt(x['ratio'], 2)}** ({fmt(x['ratio_min'], 2)}–{fmt(x['ratio_max'], 2)}) | "
          f"{', '.join(fmt(y['ratio'], 2) for y in x['per_round'])} | {ok(x['meets_target'])} |")
    for x in ratios:
        if x["workload"] not in INFO_WORKLOADS:
            continue
        p(f"| {LABEL.get(x['workload'], x['workload'])} ÷ {SHORT[x['limit']]} (no target) | {x['clients']} | "
          f"**{fmt(x['ratio'], 2)}** ({fmt(x['ratio_min'], 2)}–{fmt(x['ratio_max'], 2)}) | "
          f"{', '.join(fmt(y['ratio'], 2) for y in x['per_round'])} | information |")
    for t in missing:
        p(f"| {t} | – | not measured in this mode | | – |")
    for x in cpu:
        p(f"| {x['workload']} CPU µs/request (service) ≤ {x['target']:.0f} | {x['clients']} | "
          f"**{fmt(x['cpu_us_per_req'])}** ({fmt(x['min'])}–{fmt(x['max'])}) | "
          f"{', '.join(fmt(y) for y in x['rounds'])} | {ok(x['meets_target'])} |")
    for x in half:
        p(f"| {x['workload']} p99 at half the peak rate < {P99_HALF_MAX_MS:.0f} ms | {x['clients']} | "
          f"**{x['p99_ms']:.2f} ms** | one run | {ok(x['meets_target'])} |")
    p(f"| service peak RSS < {RSS_MAX_MIB:.0f} MiB | – | **{peak_mib:.1f} MiB** | VmHWM at the end | "
      f"{ok(peak_mib < RSS_MAX_MIB)} |")
    p()
    p("### Per round (the disk probe and each pair measured back to back)")
    p()
    p("| round | order | disk dsync/s | workload | clients | req/s | limit | limit/s | ratio | other load |")
    p("|---:|---|---:|---|---:|---:|---|---:|---:|---:|")
    orders = {x["round"]: x.get("order", "") for x in rounds}
    per = sorted(((y["round"], x, y) for x in ratios for y in x["per_round"]),
                 key=lambda t: (t[0], ALL_WORKLOADS.index(t[1]["workload"]), t[1]["clients"], t[1]["limit"]))
    for n, x, y in per:
        ol = " / ".join("–" if v is None else f"{v:.2f}" for v in y["other_load_cores"])
        info = " (information)" if x["workload"] in INFO_WORKLOADS else ""
        p(f"| {n} | {orders.get(n, '')} | {fmt(y['dsync_8k_writes_per_s'])} | {x['workload']} | "
          f"{x['clients']} | {fmt(y['rps'])} | {SHORT[x['limit']]} | {fmt(y['limit_rps'])} | "
          f"{fmt(y['ratio'], 2)}{info} | {ol} |")
    p()
    p("### Service (medians over the rounds)")
    p()
    p("| workload | clients | req/s (min–max) | p50 ms | p99 ms | p99.9 ms | errors | RSS MiB "
      "| CPU µs/req (min–max) | other load (max) |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for wl in ALL_WORKLOADS:
        for c in client_counts(runs, wl):
            x = summ[f"{wl}_c{c}"]
            lat = x["latency_ms"]
            p(f"| {LABEL.get(wl, wl)} | {c} | {spread(x['rps'], 0)} | {fmt(lat['p50'], 2)} | {fmt(lat['p99'], 2)} | "
              f"{fmt(lat['p999'], 2)} | {x['errors']} | {fmt((x['rss_kib'] or 0) / 1024, 1)} | "
              f"{spread(x['cpu_us_per_req'], 0)} | {fmt(x['other_load_cores']['max'], 2)} |")
    p()
    p("### Limits, measured in the same rounds (medians over the rounds)")
    p()
    p("| limit | clients | per s (min–max) | latency (median) | errors | other load (max) |")
    p("|---|---:|---:|---|---:|---:|")
    for prefix, label in LIMIT_NAMES.items():
        for c in client_counts(runs, prefix):
            x = summ[f"{prefix}_c{c}"]
            lat = x["latency_ms"]
            lt = (f"mean {fmt(lat['mean'], 2)} ms" if lat.get("p50") is None else
                  f"p50 {lat['p50']:.2f} / p99 {lat['p99']:.2f} / p99.9 {lat['p999']:.2f} ms"
                  + (" per tx" if prefix == "limit_batch" else ""))
            if x["cpu_us_per_req"]["median"] is not None:
                lt += f"; server {x['cpu_us_per_req']['median']:.0f} CPU µs/req"
            p(f"| {label} | {c} | {spread(x['rps'], 0)} | {lt} | {x['errors']} | "
              f"{fmt(x['other_load_cores']['max'], 2)} |")
    for k in sorted(k for k in runs if k.startswith("diag_detokenize_sql_c")):
        x = runs[k]
        lat = x["latency_ms"]
        p(f"| diag: pgbench SELECT, then the audit append (head lock + audit_append_rows), unbatched "
          f"(2 tx), one run | {x['clients']} | {fmt(x['rps'])} | p50 {lat['p50']:.2f} / p99 {lat['p99']:.2f} "
          f"/ p99.9 {lat['p999']:.2f} ms | {x['errors']} | {other(x)} |")
    p()
    p("Ratios to the bare HTTP limit (information, no target): " + "; ".join(
        f"{x['workload']} c={x['clients']} {fmt(x['ratio'], 2)} ({fmt(x['ratio_min'], 2)}–"
        f"{fmt(x['ratio_max'], 2)})" for x in ratios if x["limit"] == "limit_http") + ".")
    p()
    p(f"p99 at half the peak rate (one paced run per workload after the rounds; wrk paced to a "
      f"constant rate by bench/common.lua's delay() hook, half the best median req/s):")
    p()
    p(f"| workload | connections | target req/s | achieved | p50 ms | p99 ms | p99.9 ms | errors "
      f"| p99 < {P99_HALF_MAX_MS:.0f} ms | other load |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for x in half:
        p(f"| {x['workload']} | {x['clients']} | {fmt(x['target_rps'])} | {fmt(x['rps'])} | "
          f"{x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['p999_ms']:.2f} | {x['errors']} | "
          f"{ok(x['meets_target'])} | {other(runs[x['workload'] + '_half'])} |")
    p()
    imp, ir = runs.get("import"), r["import"]
    if imp:
        iv, rep = imp["verification"], imp["report"]
        p(f"Bulk import (`cardvault import` of {imp['rows']:,} generated cards from a CSV file, "
          f"{imp['batch']} rows per transaction, one process, the whole command timed, one run):")
        p()
        p("| rows | s | rows/s | its report's rows/s | peak RSS MiB | CPU µs/row (import / PostgreSQL) "
          "| × tokenize peak | × pgbench insert (1 row/tx) | × pgbench insert (64 rows/tx) | errors | other load |")
        p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        p(f"| {imp['rows']:,} | {imp['duration_s']:.1f} | {fmt(imp['rps'])} | "
          f"{fmt(imp['reported_rows_per_s'])} | {imp['peak_rss_kib'] / 1024:.1f} | "
          f"{fmt(imp['cpu_us_per_row'])} / {fmt(imp.get('postgres_cpu_us_per_row'))} | "
          f"**{fmt(ir['ratio_to_tokenize_peak'], 2)}** ({fmt(ir['tokenize_peak_rps'])} req/s, "
          f"c={ir['tokenize_peak_clients']}) | "
          f"**{fmt(ir['ratio_to_limit_insert'], 2)}** ({fmt(ir['limit_rps'])} tx/s, "
          f"c={ir['limit_clients']}) | "
          f"**{fmt(ir['ratio_to_limit_batch'], 2)}** ({fmt(ir['limit_batch_rows_per_s'])} rows/s, "
          f"c={ir['limit_batch_clients']}) | {imp['errors']} | {other(imp)} |")
        p()
        p(f"Import check: {rep['imported']} imported, {rep['merged']} merged, {rep['refused']} refused; "
          f"{iv['tokens_in_db']} tokens and {iv['import_rows_in_db']} import_rows of the merchant in "
          f"the database; mapping file {iv['mapping_rows']} rows, {iv['mapping_tokens_in_db']} of "
          f"{iv['mapping_distinct_tokens']} tokens found, row ids "
          f"{'match' if iv['mapping_ids_match_csv'] else 'DO NOT match'} the CSV's. "
          f"Peak RSS from {imp['rss_source']}.")
        p()
    p("other load: CPU cores used during the measurement by processes that are not this benchmark "
      "(service, its PostgreSQL, wrk/pgbench); per round: service run / limit run. "
      f"This machine has {m['nproc']} cores: much other load makes a round unreliable, which the "
      "median of several interleaved rounds damps but does not remove.")
    p()
    v = r["verification"]
    ev = v.get("elements")
    el_tokens = (f" (of which elements: {ev['responses_201']} answered 201, {ev['found_in_db']} of "
                 f"{ev['distinct']} found, {ev['missing']} missing)" if ev else "")
    p(f"Peak RSS of the service: {peak_mib:.1f} MiB (VmHWM of the service process at the end of "
      f"the run; {ok(peak_mib < RSS_MAX_MIB)} < {RSS_MAX_MIB:.0f} MiB). "
      f"Tokens: {v['responses_201']} answered 201, {v['found_in_db']} of {v['distinct']} "
      f"found in the database, {v['missing']} missing{el_tokens}. Errors: {r['errors']}. "
      f"Audit events: {v['audit_events']}.")
    prof = r.get("profile")
    if prof:
        wls = [w for w in WORKLOADS if w in prof]
        c0 = clients[0]
        p()
        p(f"CPU per request and where it goes (service process; `perf record -F 499 --call-graph dwarf` "
          f"during an extra run of each workload at {c0} clients; each sample is charged to the first "
          "library or cardvault source file on its stack, so libc and kernel time counts for its caller; "
          "µs = share × the median CPU µs/req of the unprofiled rounds):")
        p()
        p("| category | " + " | ".join(f"{w} µs/req (share)" for w in wls) + " |")
        p("|---|" + "---:|" * len(wls))
        cats = []
        for w in wls:
            for x in prof[w]["split"]:
                if x["category"] not in cats:
                    cats.append(x["category"])
        for c in cats:
            cells = []
            for w in wls:
                x = next((y for y in prof[w]["split"] if y["category"] == c), None)
                cells.append(f"{x['cpu_us_per_req']:.1f} ({x['share'] * 100:.0f} %)" if x else "–")
            p(f"| {c} | " + " | ".join(cells) + " |")
        p("| **total (user + system)** | " + " | ".join(
            f"**{prof[w]['cpu_us_per_req']:.0f}** ({prof[w]['samples']} samples)" for w in wls) + " |")
        p("| of which in the kernel | " + " | ".join(
            f"{prof[w]['self_by_dso'].get('kernel', 0) * 100:.0f} %" for w in wls) + " |")
        p()
        for w in wls:
            top = ", ".join(f"{k} {v * 100:.1f} %" for k, v in list(prof[w]["top_kernel_symbols"].items())[:5])
            p(f"- {w}: top kernel symbols {top}")
    bad = [k for k, ok_ in r["sql_matches_service"].items() if ok_ is not True]
    if bad:
        p()
        p(f"**Warning:** the pgbench SQL no longer matches the store SQL files (service/store_*.c) for: {', '.join(bad)} "
          "(see bench/pgbench/README).")


if __name__ == "__main__":
    main()
