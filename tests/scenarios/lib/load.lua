-- What the wrk scripts of the scenarios share (tokenize-load.lua,
-- detokenize-verify.lua and the keys-* scripts): the thread registry, the
-- client-known card construction, per-thread output files and the summary
-- file done() writes. Each script loads it with
--   local L = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "load.lua")
-- (the same dofile mechanism as bench/common.lua, from the script's own folder).
local L = {}

-- setup() runs in the main Lua state: number the threads and keep them so
-- done() can collect their counters with thread:get().
L.threads = {}
local next_id = 0
function L.setup(thread)
  thread:set("tid", next_id)
  table.insert(L.threads, thread)
  next_id = next_id + 1
end

-- The Luhn check digit of a digit string.
function L.luhn(body)
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

-- Thread tid's card n: 15-digit body = PREFIX .. two-digit tid .. zero-padded
-- n, plus the Luhn digit (luhn_pan in tests/lib/scenario.sh builds the same).
function L.pan(prefix, tid, n)
  local head = prefix .. string.format("%02d", tid)
  local body15 = head .. string.format("%0" .. (15 - #head) .. "d", n)
  return body15 .. L.luhn(body15)
end

function L.card_json(pan, month, year)
  return string.format('{"pan":"%s","exp_month":%d,"exp_year":%d}', pan, month, year)
end

-- Appends "TOKEN FIELD..." for a 201 answer to the acks file, flushed at
-- once: the list of tokens the client was told are stored.
function L.ack(acks, body, ...)
  local tok = body:match('"token":"(tok_%w+)"')
  acks:write(tok or "MISSING_TOKEN", " ", table.concat({ ... }, " "), "\n")
  acks:flush()
end

-- The error envelope's code of a response body, or "-".
function L.error_code(body)
  return body:match('"code":"([%w_]+)"') or "-"
end

function L.headers(key)
  return { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }
end

-- OUTDIR/NAME.<tid>, opened for appending.
function L.open_thread_file(outdir, name, tid)
  return io.open(string.format("%s/%s.%d", outdir, name, tid), "a")
end

-- The tokens ("TOKEN ..." lines of ACKFILE) thread tid of nthreads takes:
-- lines tid, tid + nthreads, ...
function L.thread_share(ackfile, tid, nthreads)
  local list, i = {}, 0
  for line in io.lines(ackfile) do
    local tok = line:match("^(%S+)")
    if tok ~= nil then
      if i % nthreads == tid then table.insert(list, tok) end
      i = i + 1
    end
  end
  return list
end

-- The sum over all threads of a numeric counter, or of a status -> count table.
function L.sum(name)
  local total = 0
  for _, t in ipairs(L.threads) do total = total + (t:get(name) or 0) end
  return total
end
function L.sum_counts(name)
  local total = {}
  for _, t in ipairs(L.threads) do
    for s, c in pairs(t:get(name) or {}) do total[s] = (total[s] or 0) + c end
  end
  return total
end

-- Opens OUTDIR/FILE (OUTDIR as thread 1 saw it) and writes one
-- "status N COUNT" line per HTTP status in counts; returns the open file.
function L.summary_file(file, counts)
  local f = io.open(L.threads[1]:get("outdir") .. "/" .. file, "w")
  for s, c in pairs(counts) do f:write(string.format("status %d %d\n", s, c)) end
  return f
end

return L
