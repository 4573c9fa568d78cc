#!/usr/bin/env python3
"""bench/report.py RESULTS_JSON STORE_PG_C PGBENCH_DIR OUT_JSON

Called by bench/run.sh. Adds the ratios to the limits, the performance targets
(TARGETS below) and a check that the pgbench scripts still run the service's SQL to the raw
results, writes OUT_JSON and prints the Markdown report on stdout."""
import json
import re
import subprocess
import sys

TARGETS = {  # workload: (limit run prefix, minimum ratio)
    "tokenize": ("limit_insert", 1.0),
    "detokenize": ("limit_insert", 0.8),
    "read": ("limit_select", 0.6),
}
P99_HALF_MAX_MS = 10.0
RSS_MAX_MIB = 64.0

# How each pgbench script writes the service statement's parameters.
TOK_INSERT = "'tok_' || lpad(:ta::text, 11, '0') || lpad(:tb::text, 11, '0')"
FP_INSERT = "'fp_' || lpad(:fa::text, 11, '0') || lpad(:fb::text, 11, '0')"
TOK_READ = "'tok_' || lpad(:i::text, 22, '0')"
PARAMS = {
    "insert_token": [":merchant_id", TOK_INSERT, ":format_version", ":dek_id", ":nonce",
                     ":ciphertext", ":brand", ":bin", ":last4", FP_INSERT, ":created_at"],
    "get_token": [":merchant_id", TOK_READ],
    "audit_head_lock": [],
    # hash and MAC are computed in C by the service; here any 32 bytes that
    # differ per event do (the database stores them, it cannot check them)
    "audit_append_rows": ["(:seq + 1)", ":int8", "ARRAY[:actor]", "ARRAY[:merchant_id]",
                          "ARRAY[" + TOK_READ + "]", "ARRAY[:request_id]", "ARRAY[:action]",
                          "ARRAY[:outcome]", "ARRAY[NULL]",
                          "ARRAY[sha256(:hash || convert_to(:request_id, 'UTF8'))]",
                          "ARRAY[sha256(:mac || :hash)]"],
}
SCRIPTS = {  # script: statement names, in order
    "insert.sql": ["insert_token"],
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
        m = re.search(r'\{\s*"' + name + r'"\s*,\s*((?:' + lit + r'\s*)+),', text)
        if m:
            parts = re.findall(lit, m.group(1))
            found[name] = "".join(bytes(p[1:-1], "utf-8").decode("unicode_escape") for p in parts)
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


def best(runs, prefix):
    """The fastest run named PREFIX_cN: (rps, clients), or (None, None)."""
    got = [(x["rps"], int(k.rsplit("_c", 1)[1])) for k, x in runs.items()
           if k.startswith(prefix + "_c") and x.get("rps")]
    return max(got) if got else (None, None)


def import_ratios(runs):
    """cardvault import's rows/s against the same run's tokenize peak (the API
    path for the same cards) and its best one-row-per-transaction INSERT rate."""
    imp = runs.get("import")
    if not imp:
        return None
    tok, tok_c = best(runs, "tokenize")
    ins, ins_c = best(runs, "limit_insert")
    return {
        "rows_per_s": imp["rps"], "batch": imp["batch"],
        "tokenize_peak_rps": tok, "tokenize_peak_clients": tok_c,
        "ratio_to_tokenize_peak": imp["rps"] / tok if tok else None,
        "limit": "limit_insert", "limit_rps": ins, "limit_clients": ins_c,
        "ratio_to_limit_insert": imp["rps"] / ins if ins else None,
        "peak_rss_kib": imp["peak_rss_kib"], "cpu_us_per_row": imp["cpu_us_per_row"],
        "postgres_cpu_us_per_row": imp.get("postgres_cpu_us_per_row"),
        "errors": imp["errors"],
    }


def main():
    res_path, store_sources, pgbench_dir, out_path = sys.argv[1:5]
    with open(res_path) as f:
        r = json.load(f)
    runs = r["runs"]
    clients = r["settings"]["clients"]

    ratios = []
    for wl, (limit, target) in TARGETS.items():
        for c in clients:
            s, l = runs.get(f"{wl}_c{c}"), runs.get(f"{limit}_c{c}")
            h = runs.get(f"limit_http_c{c}")
            if not s or not l:
                continue
            ratio = s["rps"] / l["rps"] if l["rps"] else None
            ratios.append({
                "workload": wl, "clients": c, "rps": s["rps"], "limit": limit,
                "limit_rps": l["rps"], "ratio": ratio, "target": target,
                "meets_target": ratio is not None and ratio >= target,
                "http_limit_rps": h["rps"] if h else None,
                "ratio_to_http_limit": s["rps"] / h["rps"] if h and h["rps"] else None,
            })
    half = []
    for wl in TARGETS:
        h = runs.get(f"{wl}_half")
        if h:
            half.append({"workload": wl, "clients": h["clients"], "target_rps": h["target_rate"],
                         "rps": h["rps"], "p50_ms": h["latency_ms"]["p50"],
                         "p99_ms": h["latency_ms"]["p99"], "p999_ms": h["latency_ms"]["p999"],
                         "errors": h["errors"],
                         "meets_target": h["latency_ms"]["p99"] < P99_HALF_MAX_MS})
    r["ratios"] = ratios
    r["half_load"] = half
    r["import"] = import_ratios(runs)
    r["sql_matches_service"] = sql_check(store_sources, pgbench_dir)
    peak_mib = r["service_peak_rss_kib"] / 1024
    r["targets"] = {
        "ratios_met": all(x["meets_target"] for x in ratios),
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
    p(f"## cardvault benchmark ({r['mode']}) — {r['date']}")
    p()
    p(f"Machine: {m['nproc']} cores ({m['cpu']}), {m['mem_gib']} GiB, {m['kernel']}, "
      f"disk {fmt(m.get('dsync_8k_writes_per_s'))} O_DSYNC 8 KiB writes/s, "
      f"load average before/after {m['loadavg_before']} / {m['loadavg_after']}. "
      f"PostgreSQL {st['postgres_version']} "
      f"({', '.join(f'{k}={v}' for k, v in st['postgres'].items())}); wrk {st['wrk']} "
      f"-t{st['wrk_threads']}, pgbench -j{st['pgbench_threads']} -M prepared; "
      f"{st['duration_s']} s per measurement. Service {r['git']}: "
      f"http threads {st['service_http_threads']} (0 = a thread per connection), "
      f"db pool {st['service_db_pool']}, db writers {st.get('service_db_writers')}"
      f"{(', ' + st['service_env'].strip()) if st['service_env'].strip() else ''}. "
      f"Command: `{r['command'].strip()}` ({r['elapsed_s']} s).")
    p()
    p("| workload | clients | req/s | p50 ms | p99 ms | p99.9 ms | errors | peak RSS MiB "
      "| CPU µs/req | limit | limit/s | ratio | target | × HTTP limit | other load |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for x in ratios:
        s = runs[f"{x['workload']}_c{x['clients']}"]
        lat = s["latency_ms"]
        p(f"| {x['workload']} | {x['clients']} | {fmt(s['rps'])} | {lat['p50']:.2f} | "
          f"{lat['p99']:.2f} | {lat['p999']:.2f} | {s['errors']} | "
          f"{s['peak_rss_kib'] / 1024:.1f} | {fmt(s['cpu_us_per_req'])} | "
          f"{x['limit'].replace('limit_', 'pgbench ')} | {fmt(x['limit_rps'])} | "
          f"**{x['ratio']:.2f}** | {'✅' if x['meets_target'] else '❌'} ≥ {x['target']} | "
          f"{fmt(x['ratio_to_http_limit'], 2)} | {other(s)} / {other(l)} |")
    p()
    p("Limits, measured in the same run:")
    p()
    p("| limit | clients | per s | latency | errors | other load |")
    p("|---|---:|---:|---|---:|---:|")
    names = {"limit_insert": "(a) pgbench INSERT, 1 row/tx", "limit_select": "(b) pgbench PK SELECT",
             "limit_http": "(c) bare libmicrohttpd", "diag_detokenize_sql":
             "diag: pgbench SELECT, then the audit append (head lock + audit_append_rows), unbatched (2 tx)"}
    for prefix, label in names.items():
        for c in sorted({int(k.rsplit("_c", 1)[1]) for k in runs if k.startswith(prefix + "_c")}):
            x = runs[f"{prefix}_c{c}"]
            lat = x["latency_ms"]
            lt = (f"mean {lat['mean']:.2f} ms" if lat.get("p50") is None else
                  f"p50 {lat['p50']:.2f} / p99 {lat['p99']:.2f} / p99.9 {lat['p999']:.2f} ms")
            if x.get("cpu_us_per_req") is not None:
                lt += f"; server {x['cpu_us_per_req']:.0f} CPU µs/req"
            p(f"| {label} | {c} | {fmt(x['rps'])} | {lt} | {x['errors']} | {other(x)} |")
    p()
    p("p99 at half the peak rate (wrk paced to a constant rate by bench/common.lua's delay() hook):")
    p()
    p("| workload | connections | target req/s | achieved | p50 ms | p99 ms | p99.9 ms | errors | p99 < 10 ms | other load |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for x in half:
        p(f"| {x['workload']} | {x['clients']} | {fmt(x['target_rps'])} | {fmt(x['rps'])} | "
          f"{x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['p999_ms']:.2f} | {x['errors']} | "
          f"{'✅' if x['meets_target'] else '❌'} | {other(runs[x['workload'] + '_half'])} |")
    p()
    imp, ir = runs.get("import"), r["import"]
    if imp:
        iv, rep = imp["verification"], imp["report"]
        p(f"Bulk import (`cardvault import` of {imp['rows']:,} generated cards from a CSV file, "
          f"{imp['batch']} rows per transaction, one process, the whole command timed):")
        p()
        p("| rows | s | rows/s | its report's rows/s | peak RSS MiB | CPU µs/row (import / PostgreSQL) "
          "| × tokenize peak | × pgbench insert (1 row/tx) | errors | other load |")
        p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        p(f"| {imp['rows']:,} | {imp['duration_s']:.1f} | {fmt(imp['rps'])} | "
          f"{fmt(imp['reported_rows_per_s'])} | {imp['peak_rss_kib'] / 1024:.1f} | "
          f"{fmt(imp['cpu_us_per_row'])} / {fmt(imp.get('postgres_cpu_us_per_row'))} | "
          f"**{fmt(ir['ratio_to_tokenize_peak'], 2)}** ({fmt(ir['tokenize_peak_rps'])} req/s, "
          f"c={ir['tokenize_peak_clients']}) | "
          f"**{fmt(ir['ratio_to_limit_insert'], 2)}** ({fmt(ir['limit_rps'])} tx/s, "
          f"c={ir['limit_clients']}) | {imp['errors']} | {other(imp)} |")
        p()
        p(f"Import check: {rep['imported']} imported, {rep['merged']} merged, {rep['refused']} refused; "
          f"{iv['tokens_in_db']} tokens and {iv['import_rows_in_db']} import_rows of the merchant in "
          f"the database; mapping file {iv['mapping_rows']} rows, {iv['mapping_tokens_in_db']} of "
          f"{iv['mapping_distinct_tokens']} tokens found, row ids "
          f"{'match' if iv['mapping_ids_match_csv'] else 'DO NOT match'} the CSV's. "
          f"Peak RSS from {imp['rss_source']}.")
        p()
    p("other load: CPU cores used during the measurement by processes that are not this benchmark "
      "(service, its PostgreSQL, wrk/pgbench); in the main table service run / limit run. "
      f"This machine has {m['nproc']} cores: much other load makes a row unreliable.")
    p()
    v = r["verification"]
    p(f"Peak RSS of the service: {peak_mib:.1f} MiB (max of the per-workload VmHWM; "
      f"{'✅' if peak_mib < RSS_MAX_MIB else '❌'} < {RSS_MAX_MIB:.0f} MiB). "
      f"Tokens: {v['responses_201']} answered 201, {v['found_in_db']} of {v['distinct']} "
      f"found in the database, {v['missing']} missing. Errors: {r['errors']}. "
      f"Audit events: {v['audit_events']}.")
    prof = r.get("profile")
    if prof:
        wls = [w for w in ("tokenize", "read", "detokenize") if w in prof]
        c0 = clients[0]
        p()
        p(f"CPU per request and where it goes (service process; `perf record -F 499 --call-graph dwarf` "
          f"during an extra run of each workload at {c0} clients; each sample is charged to the first "
          "library or cardvault source file on its stack, so libc and kernel time counts for its caller; "
          "µs = share × CPU µs/req of the unprofiled run):")
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
    bad = [k for k, ok in r["sql_matches_service"].items() if ok is not True]
    if bad:
        p()
        p(f"**Warning:** the pgbench SQL no longer matches the store SQL files (service/store_*.c) for: {', '.join(bad)} "
          "(see bench/pgbench/README).")


if __name__ == "__main__":
    main()
