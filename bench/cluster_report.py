#!/usr/bin/env python3
"""bench/cluster_report.py RESULTS_JSON OUT_JSON

Called by bench/cluster.sh. Adds the medians over the rounds and the per-round
ratios (through HAProxy ÷ straight at one vault, tokenize ÷ the one-row insert
on the primary with its synchronous standby, bare libmicrohttpd through the
same HAProxy configuration ÷ straight) to the raw results, writes OUT_JSON and
prints the Markdown report on stdout. There are no targets: every figure is
for information."""
import json
import re
import statistics
import sys

MEASUREMENTS = [  # run prefix, label
    ("tokenize_haproxy", "tokenize through HAProxy (vaults a + b)"),
    ("tokenize_direct", "tokenize straight at vault a"),
    ("read_haproxy", "read through HAProxy (vaults a + b)"),
    ("read_direct", "read straight at vault a"),
    ("bare_haproxy", "limit: bare libmicrohttpd through HAProxy (two instances)"),
    ("bare_direct", "limit: bare libmicrohttpd straight (one instance)"),
    ("limit_syncinsert", "limit: pgbench INSERT, 1 row/tx, primary + synchronous standby"),
]
RATIOS = [  # numerator, denominator, label
    ("tokenize_haproxy", "tokenize_direct", "tokenize: through HAProxy ÷ straight at vault a"),
    ("read_haproxy", "read_direct", "read: through HAProxy ÷ straight at vault a"),
    ("bare_haproxy", "bare_direct", "bare libmicrohttpd: through HAProxy ÷ straight"),
    ("tokenize_haproxy", "limit_syncinsert", "tokenize through HAProxy ÷ sync-standby 1-row insert"),
    ("tokenize_direct", "limit_syncinsert", "tokenize straight at vault a ÷ sync-standby 1-row insert"),
]
RUN_NAME = re.compile(r"^(?P<prefix>.+)_c(?P<c>\d+)_r(?P<r>\d+)$")


def fmt(x, nd=0):
    return "–" if x is None else f"{x:,.{nd}f}"


def stats(xs):
    got = sorted(x for x in xs if x is not None)
    return {"median": statistics.median(got) if got else None,
            "min": got[0] if got else None, "max": got[-1] if got else None, "rounds": xs}


def spread(st, nd=2):
    if st["median"] is None:
        return "–"
    return f"{st['median']:,.{nd}f} ({st['min']:,.{nd}f}–{st['max']:,.{nd}f})"


def by_round(runs, prefix):
    out = {}
    for k, x in runs.items():
        m = RUN_NAME.match(k)
        if m and m["prefix"] == prefix:
            out[int(m["r"])] = x
    return out


def other(x):
    return (x.get("machine") or {}).get("other_load_cores")


def main():
    res_path, out_path = sys.argv[1:3]
    with open(res_path) as f:
        r = json.load(f)
    runs, st, m = r["runs"], r["settings"], r["machine"]
    rounds = r.get("rounds", [])
    dsync = {x["round"]: x.get("dsync_8k_writes_per_s") for x in rounds}

    summ = {}
    for prefix, label in MEASUREMENTS:
        rr = by_round(runs, prefix)
        ns = sorted(rr)
        col = lambda f: [f(rr[n]) for n in ns]
        summ[prefix] = {
            "label": label, "rounds": ns,
            "rps": stats(col(lambda x: x["rps"])),
            "latency_ms": {q: stats(col(lambda x: x["latency_ms"].get(q)))["median"]
                           for q in ("p50", "p99", "p999")},
            "front_cpu_us_per_req": stats(col(lambda x: x.get("front_cpu_us_per_req"))),
            "front": next((rr[n].get("front") for n in ns), None),
            "postgres_cores": stats(col(lambda x: (x.get("machine") or {}).get("postgres_cores"))),
            "errors": sum(col(lambda x: x["errors"])),
            "other_load_cores": stats(col(other)),
        }
    ratios = []
    for num, den, label in RATIOS:
        a, b = by_round(runs, num), by_round(runs, den)
        per = [{"round": n, "rps": a[n]["rps"], "limit_rps": b[n]["rps"],
                "ratio": a[n]["rps"] / b[n]["rps"] if b[n]["rps"] else None,
                "dsync_8k_writes_per_s": dsync.get(n),
                "other_load_cores": [other(a[n]), other(b[n])]}
               for n in sorted(set(a) & set(b))]
        s = stats([x["ratio"] for x in per])
        ratios.append({"label": label, "numerator": num, "denominator": den, "per_round": per,
                       "ratio": s["median"], "ratio_min": s["min"], "ratio_max": s["max"]})
    r["summary"] = summ
    r["ratios"] = ratios
    with open(out_path, "w") as f:
        json.dump(r, f, indent=2)
        f.write("\n")

    p = print
    p(f"## cardvault cluster benchmark — {r['date']}")
    p()
    p(f"Machine: {m['nproc']} cores ({m['cpu']}), {m['mem_gib']} GiB, {m['kernel']}, load average "
      f"before/after {m['loadavg_before']} / {m['loadavg_after']}. Cluster of tests/cluster/lib.sh on "
      f"loopback: pg_auto_failover monitor, PostgreSQL {st['postgres_version']} primary + standby "
      f"({st['replication']}; synchronous_standby_names '{st['synchronous_standby_names']}', "
      f"synchronous_commit={st['synchronous_commit']}, max_connections={st['max_connections']}), "
      f"two vaults (http threads {st['service_http_threads']}) behind HAProxy {st['haproxy']}. "
      f"wrk {st['wrk']} -t{st['wrk_threads']}, pgbench -j{st['pgbench_threads']} -M prepared; "
      f"{st['clients']} clients, {st['rounds']} interleaved rounds, {st['duration_s']} s per measurement. "
      f"Service {r['git']}{(', ' + st['service_env'].strip()) if st['service_env'].strip() else ''}. "
      f"Command: `{r['command'].strip()}` ({r['elapsed_s']} s).")
    p()
    p(f"**fsync is on on both nodes** (primary fsync={st['fsync_primary']}, standby "
      f"fsync={st['fsync_standby']}: pg_auto_failover keeps PostgreSQL's default), and with "
      "synchronous_commit=on every commit waits for the primary's WAL flush and for the standby's. "
      "Limit (a) here is the same one-row token INSERT as `make bench`'s (bench/pgbench/insert.sql) on "
      "the primary, so it includes the round trip to the standby and the standby's flush.")
    p()
    p("### Ratios (median of the per-round ratios; min–max over the rounds; information, no target)")
    p()
    p("| ratio | median (min–max) | per round |")
    p("|---|---:|---|")
    for x in ratios:
        p(f"| {x['label']} | **{fmt(x['ratio'], 2)}** ({fmt(x['ratio_min'], 2)}–{fmt(x['ratio_max'], 2)}) | "
          f"{', '.join(fmt(y['ratio'], 2) for y in x['per_round'])} |")
    p()
    p("### Measurements (medians over the rounds)")
    p()
    p("| measurement | clients | per s (min–max) | p50 ms | p99 ms | p99.9 ms | errors "
      "| front CPU µs/req (min–max) | PostgreSQL cores | other load (max) |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for prefix, _ in MEASUREMENTS:
        x = summ[prefix]
        lat = x["latency_ms"]
        front = (f"{spread(x['front_cpu_us_per_req'], 0)} ({x['front'].replace(' ', ' + ')})"
                 if x["front"] else "–")
        p(f"| {x['label']} | {st['clients']} | {spread(x['rps'], 0)} | {fmt(lat['p50'], 2)} | "
          f"{fmt(lat['p99'], 2)} | {fmt(lat['p999'], 2)} | {x['errors']} | {front} | "
          f"{fmt(x['postgres_cores']['median'], 2)} | {fmt(x['other_load_cores']['max'], 2)} |")
    p()
    p("### Per round (each measurement in the order it ran)")
    p()
    p("| round | order | disk dsync/s | measurement | per s | p99 ms | errors | other load |")
    p("|---:|---|---:|---|---:|---:|---:|---:|")
    for rd in rounds:
        n = rd["round"]
        for step in rd.get("steps", []):
            x = runs.get(f"{step}_c{st['clients']}_r{n}")
            if not x:
                continue
            p(f"| {n} | {rd.get('order', '')} | {fmt(dsync.get(n))} | {step} | {fmt(x['rps'])} | "
              f"{fmt(x['latency_ms'].get('p99'), 2)} | {x['errors']} | {fmt(other(x), 2)} |")
    p()
    p("other load: CPU cores used during the measurement by processes that are not this benchmark "
      "(the vaults, both HAProxy instances, the monitor and both PostgreSQL nodes with every process "
      f"under pg_autoctl, the bare_mhd instances, wrk/pgbench). This machine has {m['nproc']} cores and "
      "runs the whole cluster and the load generator: much other load makes a round unreliable "
      "(machine busy time here includes irq and softirq, which this kernel also charges to the "
      "interrupted process; see bench/cluster.sh). "
      "front CPU: the CPU of the processes that served the requests (named in brackets) ÷ requests.")
    p()
    v = r["verification"]
    p(f"Tokens: {v['responses_201']} answered 201 (warm-up and every tokenize run), "
      f"{v['tokens_recorded']} recorded, {v['found_on_primary']} of {v['distinct']} found on the "
      f"primary, {v['missing']} missing; {fmt(v.get('found_on_standby'))} visible on the standby at "
      f"the end (information: synchronous_commit=on waits for its flush, not its replay). "
      f"Errors: {r['errors']}.")


if __name__ == "__main__":
    main()
