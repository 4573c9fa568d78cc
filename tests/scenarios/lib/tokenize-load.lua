-- wrk script: tokenize at full speed with distinct, client-known PANs.
--   wrk -t N -c N -s tokenize-load.lua URL -- OUTDIR PREFIX KEY
-- Run it with one connection per thread (-c == -t): a thread then has one
-- request in flight at a time, so a response always belongs to the request
-- built last by that thread. Each thread derives its PANs from a counter
-- (L.pan in load.lua, the same construction as luhn_pan in
-- tests/lib/scenario.sh). Every 201 is appended, flushed at once, as
-- "TOKEN PAN" to OUTDIR/acks.<thread>: that file is the list of tokens the
-- client was told are stored. done() writes OUTDIR/summary: one
-- "status N COUNT" line per HTTP status, "retry_after_missing COUNT" (503 or
-- 429 answers without Retry-After), "latency_max_us N", "timeouts N",
-- "connect_errors N".
local L = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "load.lua")

setup = L.setup

function init(args)
  outdir, prefix, key = args[1], args[2], args[3]
  acks = L.open_thread_file(outdir, "acks", tid)
  n = 0
  counts = {}
  no_retry_after = 0
  hdrs = L.headers(key)
end

-- wrk calls request() once on thread 0 and discards it (to check the script's
-- request), and again after a reconnect; the counter moves on in response(),
-- so a request that got no answer is re-sent with the same PAN.
function request()
  last_pan = L.pan(prefix, tid, n + 1)
  return wrk.format("POST", "/v1/tokens", hdrs, L.card_json(last_pan, 12, 2030))
end

function response(status, headers, body)
  n = n + 1
  counts[status] = (counts[status] or 0) + 1
  if status == 201 then
    L.ack(acks, body, last_pan)
  elseif (status == 503 or status == 429) and headers["Retry-After"] == nil then
    no_retry_after = no_retry_after + 1
  end
end

function done(summary, latency, requests)
  local f = L.summary_file("summary", L.sum_counts("counts"))
  f:write(string.format("retry_after_missing %d\n", L.sum("no_retry_after")))
  f:write(string.format("latency_max_us %d\n", latency.max))
  f:write(string.format("timeouts %d\n", summary.errors.timeout))
  f:write(string.format("connect_errors %d\n", summary.errors.connect))
  f:close()
end
