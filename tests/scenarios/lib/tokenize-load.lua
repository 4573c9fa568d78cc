-- wrk script: tokenize at full speed with distinct, client-known PANs.
--   wrk -t N -c N -s tokenize-load.lua URL -- OUTDIR PREFIX KEY
-- Run it with one connection per thread (-c == -t): a thread then has one
-- request in flight at a time, so a response always belongs to the request
-- built last by that thread. Each thread derives its PANs from a counter:
-- 15-digit body = PREFIX .. two-digit thread id .. zero-padded counter, plus
-- the Luhn check digit (the same construction as luhn_pan in
-- tests/lib/scenario.sh). Every 201 is appended, flushed at once, as
-- "TOKEN PAN" to OUTDIR/acks.<thread>: that file is the list of tokens the
-- client was told are stored. done() writes OUTDIR/summary: one
-- "status N COUNT" line per HTTP status, "retry_after_missing COUNT" (503 or
-- 429 answers without Retry-After), "latency_max_us N", "timeouts N",
-- "connect_errors N".
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
  outdir, prefix, key = args[1], args[2], args[3]
  acks = io.open(string.format("%s/acks.%d", outdir, tid), "a")
  n = 0
  counts = {}
  no_retry_after = 0
  hdrs = { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }
end

-- wrk calls request() once on thread 0 and discards it (to check the script's
-- request), and again after a reconnect; the counter moves on in response(),
-- so a request that got no answer is re-sent with the same PAN.
function request()
  local head = prefix .. string.format("%02d", tid)
  local body15 = head .. string.format("%0" .. (15 - #head) .. "d", n + 1)
  last_pan = body15 .. luhn(body15)
  return wrk.format("POST", "/v1/tokens", hdrs,
    '{"pan":"' .. last_pan .. '","exp_month":12,"exp_year":2030}')
end

function response(status, headers, body)
  n = n + 1
  counts[status] = (counts[status] or 0) + 1
  if status == 201 then
    local tok = body:match('"token":"(tok_%w+)"')
    acks:write((tok or "MISSING_TOKEN"), " ", last_pan, "\n")
    acks:flush()
  elseif (status == 503 or status == 429) and headers["Retry-After"] == nil then
    no_retry_after = no_retry_after + 1
  end
end

function done(summary, latency, requests)
  local total, missing = {}, 0
  for _, t in ipairs(threads) do
    for s, c in pairs(t:get("counts") or {}) do total[s] = (total[s] or 0) + c end
    missing = missing + (t:get("no_retry_after") or 0)
  end
  local f = io.open(threads[1]:get("outdir") .. "/summary", "w")
  for s, c in pairs(total) do f:write(string.format("status %d %d\n", s, c)) end
  f:write(string.format("retry_after_missing %d\n", missing))
  f:write(string.format("latency_max_us %d\n", latency.max))
  f:write(string.format("timeouts %d\n", summary.errors.timeout))
  f:write(string.format("connect_errors %d\n", summary.errors.connect))
  f:close()
end
