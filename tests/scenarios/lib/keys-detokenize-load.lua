-- wrk script: detokenize a fixed set of known cards over and over while the
-- key lifecycle runs (tests/scenarios/keys.sh), checking every answer.
--   wrk -t N -c N -s keys-detokenize-load.lua URL -- CARDFILE KEY OUTDIR
-- CARDFILE holds "TOKEN PAN MONTH YEAR" lines; each thread walks the whole
-- list from its own offset, round and round. One connection per thread, so
-- an answer belongs to the token requested last. A 200 counts as "match" when
-- its token, PAN, exp_month and exp_year are exactly the card's; anything
-- else is logged as "STATUS CODE TOKEN" (CODE: the error code, or "mismatch")
-- to OUTDIR/detok-errors.<thread>. done() writes OUTDIR/detok-summary:
-- "status N COUNT" per HTTP status, "match COUNT", "mismatch COUNT",
-- "latency_max_us N", "timeouts N".
local L = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "load.lua")

setup = L.setup

function init(args)
  local cardfile, key = args[1], args[2]
  outdir = args[3]
  cards = {}
  for line in io.lines(cardfile) do
    local tok, pan, m, y = line:match("^(%S+) (%d+) (%d+) (%d+)")
    if tok ~= nil then table.insert(cards, { tok, pan, tonumber(m), tonumber(y) }) end
  end
  pos = (tid * 7919) % math.max(#cards, 1)
  counts, match, mismatch = {}, 0, 0
  errs = L.open_thread_file(outdir, "detok-errors", tid)
  hdrs = L.headers(key)
end

function request()
  current = cards[pos + 1]
  return wrk.format("POST", "/v1/tokens/" .. current[1] .. "/detokenize", hdrs, "{}")
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if status == 200 then
    local tok = body:match('"token":"(tok_%w+)"')
    local pan = body:match('"pan":"(%d+)"')
    local m = tonumber(body:match('"exp_month":(%d+)'))
    local y = tonumber(body:match('"exp_year":(%d+)'))
    if tok == current[1] and pan == current[2] and m == current[3] and y == current[4] then
      match = match + 1
    else
      mismatch = mismatch + 1
      errs:write("200 mismatch ", current[1], "\n")
      errs:flush()
    end
  else
    errs:write(status, " ", L.error_code(body), " ", current[1], "\n")
    errs:flush()
  end
  pos = (pos + 1) % #cards
end

function done(summary, latency, requests)
  local f = L.summary_file("detok-summary", L.sum_counts("counts"))
  f:write(string.format("match %d\n", L.sum("match")))
  f:write(string.format("mismatch %d\n", L.sum("mismatch")))
  f:write(string.format("latency_max_us %d\n", latency.max))
  f:write(string.format("timeouts %d\n", summary.errors.timeout))
  f:close()
end
