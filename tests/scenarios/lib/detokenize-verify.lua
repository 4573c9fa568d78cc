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
local L = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "load.lua")

setup = L.setup
init = L.verify_init
request = L.verify_request

function response(status, headers, body)
  L.verify_response(status, body, function()
    if status == 200 then
      local tok = body:match('"token":"(tok_%w+)"') or "-"
      local pan = body:match('"pan":"(%d+)"') or "-"
      return "200 " .. tok .. " " .. pan
    end
    return status .. " " .. current .. " -"
  end)
end
