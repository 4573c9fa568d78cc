-- bench/tokenize.lua: POST /v1/tokens with a new Luhn-valid card each time
-- (publishable key). Every token acknowledged with 201 is written to a file
-- per thread (BENCH_TOKEN_OUT.<thread>) so that run.sh can check afterwards
-- that each one is in the database. Any other status is counted as an error.
local M = dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

local headers = {
   ["Authorization"] = "Bearer " .. M.key,
   ["Content-Type"] = "application/json",
}
local out = nil
local written = 0

function init(args)
   M.seed()
   local prefix = os.getenv("BENCH_TOKEN_OUT")
   if prefix then
      out = assert(io.open(prefix .. "." .. tostring(id), "w"))
      out:setvbuf("full")
   end
end

function request()
   return wrk.format("POST", "/v1/tokens", headers, M.tokenize_body())
end

M.on_response = function(status, hdrs, body)
   if status == 201 and out then
      local tok = string.match(body, '"token"%s*:%s*"(tok_[0-9A-Za-z]+)"')
      if tok then
         out:write(tok, "\n")
         written = written + 1
         -- wrk exits without closing thread states: flush often enough that
         -- at most the tail is left to the C library's exit-time flush
         if written % 512 == 0 then
            out:flush()
         end
      else
         -- a 201 without a token is a broken response: count it as an error
         ok_count = ok_count - 1
         bad_count = bad_count + 1
      end
   end
end
