-- wrk script: detokenize every acknowledged card once (tests/scenarios/keys.sh).
-- detokenize-verify.lua that also brings back the expiry and the error code:
--   wrk -t N -c N -s keys-verify.lua URL -- ACKFILE KEY OUTDIR N
-- ACKFILE holds "TOKEN PAN MONTH YEAR" lines; thread i takes lines i, i+N, ...
-- Each answer is appended to OUTDIR/verify.<thread>: "200 TOKEN PAN MONTH YEAR"
-- read from the detokenize body itself, or "STATUS TOKEN CODE" for any other
-- status (CODE: the error envelope's code). A thread that has asked for all
-- its tokens writes OUTDIR/verify-done.<thread> and stops; the caller
-- interrupts wrk (SIGINT) once every thread is done.
local L = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "load.lua")

setup = L.setup
init = L.verify_init
request = L.verify_request

function response(status, headers, body)
  L.verify_response(status, body, function()
    if status == 200 then
      local tok = body:match('"token":"(tok_%w+)"') or "-"
      local pan = body:match('"pan":"(%d+)"') or "-"
      local m = body:match('"exp_month":(%d+)') or "-"
      local y = body:match('"exp_year":(%d+)') or "-"
      return "200 " .. tok .. " " .. pan .. " " .. m .. " " .. y
    end
    return status .. " " .. current .. " " .. L.error_code(body)
  end)
end
