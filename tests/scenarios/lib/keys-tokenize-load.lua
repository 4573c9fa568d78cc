-- wrk script: tokenize at full speed with distinct, client-known cards
-- (PAN and expiry), for tests/scenarios/keys.sh. tokenize-load.lua that also
-- varies and records the expiry:
--   wrk -t N -c N -s keys-tokenize-load.lua URL -- OUTDIR PREFIX KEY BASEYEAR
-- One connection per thread (-c == -t), so a response always belongs to the
-- request built last by that thread. Thread t's card n: PAN = L.pan (load.lua,
-- luhn_pan in tests/lib/scenario.sh); expiry month n % 12 + 1, year
-- BASEYEAR + n % 8. Every 201 is appended, flushed at once, as
-- "TOKEN PAN MONTH YEAR" to OUTDIR/acks.<thread>. done() writes
-- OUTDIR/summary: "status N COUNT" per HTTP status, "latency_max_us N",
-- "timeouts N", "connect_errors N"; every answer other than 201 is also logged
-- as "STATUS CODE PAN" to OUTDIR/errors.<thread> (CODE: the error envelope's code).
local L = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "load.lua")

setup = L.setup

function init(args)
  outdir, prefix, key, baseyear = args[1], args[2], args[3], tonumber(args[4])
  acks = L.open_thread_file(outdir, "acks", tid)
  errs = L.open_thread_file(outdir, "errors", tid)
  n = 0
  counts = {}
  hdrs = L.headers(key)
end

-- request() may be called again for the same card (wrk's discarded probe
-- request on thread 0, a reconnect): the counter moves on in response() only.
function request()
  last_pan = L.pan(prefix, tid, n + 1)
  last_month = (n + 1) % 12 + 1
  last_year = baseyear + (n + 1) % 8
  return wrk.format("POST", "/v1/tokens", hdrs, L.card_json(last_pan, last_month, last_year))
end

function response(status, headers, body)
  n = n + 1
  counts[status] = (counts[status] or 0) + 1
  if status == 201 then
    L.ack(acks, body, last_pan, last_month, last_year)
  else
    errs:write(status, " ", L.error_code(body), " ", last_pan, "\n")
    errs:flush()
  end
end

function done(summary, latency, requests)
  local f = L.summary_file("summary", L.sum_counts("counts"))
  f:write(string.format("latency_max_us %d\n", latency.max))
  f:write(string.format("timeouts %d\n", summary.errors.timeout))
  f:write(string.format("connect_errors %d\n", summary.errors.connect))
  f:close()
end
