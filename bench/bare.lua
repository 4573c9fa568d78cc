-- bench/bare.lua: the HTTP limit. Sends exactly what tokenize.lua sends (same
-- headers, a new card body each time, the same response bookkeeping) to
-- bench/bare_mhd, which answers a fixed body of a tokenize response's size.
local M = dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

local headers = {
   ["Authorization"] = "Bearer " .. M.key,
   ["Content-Type"] = "application/json",
}

function init(args)
   M.seed()
end

function request()
   return wrk.format("POST", "/v1/tokens", headers, M.tokenize_body())
end

M.on_response = function(status, hdrs, body)
   -- the same per-response work tokenize.lua does on a 201
   local tok = string.match(body, '"token"%s*:%s*"(tok_[0-9A-Za-z]+)"')
   if status == 201 and not tok then
      ok_count = ok_count - 1
      bad_count = bad_count + 1
   end
end
