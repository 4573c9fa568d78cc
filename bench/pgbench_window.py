#!/usr/bin/env python3
"""bench/pgbench_window.py < pgbench -l logs: the steady window's rate and latency.

Reads every line of `pgbench -l` logs (client, transaction no, latency µs,
script no, completion time s, µs) on stdin and prints one JSON object: the
number of transactions completed in the steady window ÷ its length, where
the window runs from the moment the last client completed its first
transaction (every client connected and running) to the moment the first
client completed its last one; and the latency percentiles of the window's
transactions (ms). Used by bench/run.sh and bench/cluster.sh: pgbench's own
tps divides by its -T clock less an estimate of the connection time, which a
loaded machine makes a fraction of the real rate (bench/README.md)."""
import json
import sys

first, last, done = {}, {}, []
for l in sys.stdin:
    f = l.split()
    if len(f) < 6 or not f[2].isdigit():
        continue  # a failed transaction: counted by pgbench itself
    t = int(f[4]) + int(f[5]) / 1e6
    first[f[0]] = min(first.get(f[0], t), t)
    last[f[0]] = max(last.get(f[0], t), t)
    done.append((t, int(f[2])))
w0 = max(first.values()) if first else None
w1 = min(last.values()) if last else None
win = sorted(us for t, us in done if w0 is not None and w0 < t <= w1)
q = lambda p: win[min(len(win) - 1, int(len(win) * p / 100))] / 1000 if win else None
ws = (w1 - w0) if win else 0.0
print(json.dumps({"p50": q(50), "p99": q(99), "p999": q(99.9), "window_s": round(ws, 3),
                  "window_tx": len(win), "tps": (len(win) / ws) if ws > 0 else None}))
