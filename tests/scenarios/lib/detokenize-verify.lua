-- wrk script: detokenize every acknowledged token once.
--   wrk -t N -c N -s detokenize-verify.lua URL -- ACKFILE KEY OUTDIR N
-- ACKFILE holds "TOKEN PAN" lines; thread i takes lines i, i+N, i+2N, ...
-- (N = the -t value, passed again as the last argument). Each answer is
-- appended to OUTDIR/verify.<thread>: "200 TOKEN PAN" from the detokenize
-- body itself (token and pan both come back), or "STATUS TOKEN -" for any
-- other status (one connection per thread, so the answer belongs to the
-- token requested last). A thread that has asked for all its tokens writes
-- OUTDIR/verify-done.<thread> and stops; the caller interrupts wrk (SIGINT)
-- once every thread is done.
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

-- wrk calls request() once on thread 0 and discards it (to check the script's
-- request), and calls it again after a reconnect: so request() only builds
-- the request for the next token, and response() moves on.
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
    out:write("200 ", tok, " ", pan, "\n")
  else
    out:write(status, " ", current, " -\n")
  end
end
