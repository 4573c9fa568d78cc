-- wrk script: detokenize every acknowledged token once (tests/scenarios/lib/load.sh
-- and keys-load.sh).
--   wrk -t N -c N -s detokenize-verify.lua URL -- ACKFILE KEY OUTDIR N
-- ACKFILE holds "TOKEN ..." lines; thread i takes lines i, i+N, i+2N, ...
-- (N = the -t value, passed again as the last argument). Each answer is
-- appended to OUTDIR/verify.<thread>: "200 TOKEN PAN MONTH YEAR" from the
-- detokenize body itself (token, pan and expiry all come back), or
-- "STATUS TOKEN CODE" for any other status (CODE: the error envelope's code;
-- one connection per thread, so the answer belongs to the token requested
-- last). A thread that has asked for all its tokens writes
-- OUTDIR/verify-done.<thread> and stops; the caller interrupts wrk (SIGINT)
-- once every thread is done.
local L = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "load.lua")

setup = L.setup

function init(args)
  local ackfile, key, nthreads = args[1], args[2], tonumber(args[4])
  outdir = args[3]
  list = L.thread_share(ackfile, tid, nthreads)
  pos = 0
  out = L.open_thread_file(outdir, "verify", tid)
  hdrs = L.headers(key)
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
    local m = body:match('"exp_month":(%d+)') or "-"
    local y = body:match('"exp_year":(%d+)') or "-"
    out:write("200 ", tok, " ", pan, " ", m, " ", y, "\n")
  else
    out:write(status, " ", current, " ", L.error_code(body), "\n")
  end
end
