-- wrk script: detokenize every acknowledged card once (tests/scenarios/keys.sh).
-- A copy of detokenize-verify.lua that also brings back the expiry and the
-- error code:
--   wrk -t N -c N -s keys-verify.lua URL -- ACKFILE KEY OUTDIR N
-- ACKFILE holds "TOKEN PAN MONTH YEAR" lines; thread i takes lines i, i+N, ...
-- Each answer is appended to OUTDIR/verify.<thread>: "200 TOKEN PAN MONTH YEAR"
-- read from the detokenize body itself, or "STATUS TOKEN CODE" for any other
-- status (CODE: the error envelope's code). A thread that has asked for all
-- its tokens writes OUTDIR/verify-done.<thread> and stops; the caller
-- interrupts wrk (SIGINT) once every thread is done.
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

function init(args)
  local ackfile, key, nthreads = args[1], args[2], tonumber(args[4])
  outdir = args[3]
  list = {}
  local i = 0
  for line in io.lines(ackfile) do
    local tok = line:match("^(%S+)")
    if tok ~= nil then
      if i % nthreads == tid then table.insert(list, tok) end
      i = i + 1
    end
  end
  pos = 0
  out = io.open(string.format("%s/verify.%d", outdir, tid), "a")
  hdrs = { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }
  finished = false
end

function request()
  if pos >= #list then
    return wrk.format("GET", "/healthz")
  end
  current = list[pos + 1]
  return wrk.format("POST", "/v1/tokens/" .. current .. "/detokenize", hdrs, "{}")
end

function response(status, headers, body)
  if pos >= #list then
    if not finished then
      finished = true
      out:flush()
      io.open(string.format("%s/verify-done.%d", outdir, tid), "w"):close()
    end
    wrk.thread:stop()
    return
  end
  pos = pos + 1
  if status == 200 then
    local tok = body:match('"token":"(tok_%w+)"') or "-"
    local pan = body:match('"pan":"(%d+)"') or "-"
    local m = body:match('"exp_month":(%d+)') or "-"
    local y = body:match('"exp_year":(%d+)') or "-"
    out:write("200 ", tok, " ", pan, " ", m, " ", y, "\n")
  else
    out:write(status, " ", current, " ", body:match('"code":"([%w_]+)"') or "-", "\n")
  end
end
