-- wrk script: tokenize at full speed with distinct, client-known cards
-- (PAN and expiry), for tests/scenarios/keys.sh. A copy of tokenize-load.lua
-- that also varies and records the expiry:
--   wrk -t N -c N -s keys-tokenize-load.lua URL -- OUTDIR PREFIX KEY BASEYEAR
-- One connection per thread (-c == -t), so a response always belongs to the
-- request built last by that thread. Thread t's card n: PAN = PREFIX .. two-
-- digit t .. zero-padded n, plus the Luhn digit (luhn_pan in
-- tests/lib/scenario.sh); expiry month n % 12 + 1, year BASEYEAR + n % 8.
-- Every 201 is appended, flushed at once, as "TOKEN PAN MONTH YEAR" to
-- OUTDIR/acks.<thread>. done() writes OUTDIR/summary: "status N COUNT" per
-- HTTP status, "latency_max_us N", "timeouts N", "connect_errors N"; every
-- answer other than 201 is also logged as "STATUS CODE PAN" to
-- OUTDIR/errors.<thread> (CODE: the error envelope's code).
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  table.insert(threads, thread)
  next_id = next_id + 1
end

local function luhn(body)
  local sum = 0
  for i = 0, #body - 1 do
    local d = tonumber(body:sub(#body - i, #body - i))
    if i % 2 == 0 then
      d = d * 2
      if d > 9 then d = d - 9 end
    end
    sum = sum + d
  end
  return tostring((10 - sum % 10) % 10)
end

function init(args)
  outdir, prefix, key, baseyear = args[1], args[2], args[3], tonumber(args[4])
  acks = io.open(string.format("%s/acks.%d", outdir, tid), "a")
  errs = io.open(string.format("%s/errors.%d", outdir, tid), "a")
  n = 0
  counts = {}
  hdrs = { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }
end

-- request() may be called again for the same card (wrk's discarded probe
-- request on thread 0, a reconnect): the counter moves on in response() only.
function request()
  local head = prefix .. string.format("%02d", tid)
  local body15 = head .. string.format("%0" .. (15 - #head) .. "d", n + 1)
  last_pan = body15 .. luhn(body15)
  last_month = (n + 1) % 12 + 1
  last_year = baseyear + (n + 1) % 8
  return wrk.format("POST", "/v1/tokens", hdrs, string.format(
    '{"pan":"%s","exp_month":%d,"exp_year":%d}', last_pan, last_month, last_year))
end

function response(status, headers, body)
  n = n + 1
  counts[status] = (counts[status] or 0) + 1
  if status == 201 then
    local tok = body:match('"token":"(tok_%w+)"')
    acks:write((tok or "MISSING_TOKEN"), " ", last_pan, " ", last_month, " ", last_year, "\n")
    acks:flush()
  else
    errs:write(status, " ", body:match('"code":"([%w_]+)"') or "-", " ", last_pan, "\n")
    errs:flush()
  end
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for s, c in pairs(t:get("counts") or {}) do total[s] = (total[s] or 0) + c end
  end
  local f = io.open(threads[1]:get("outdir") .. "/summary", "w")
  for s, c in pairs(total) do f:write(string.format("status %d %d\n", s, c)) end
  f:write(string.format("latency_max_us %d\n", latency.max))
  f:write(string.format("timeouts %d\n", summary.errors.timeout))
  f:write(string.format("connect_errors %d\n", summary.errors.connect))
  f:close()
end
