-- bench/detokenize.lua: POST /v1/tokens/{token}/detokenize (detokenize key,
-- body "{}") over tokens created by the tokenize run (BENCH_TOKENS), picked
-- at random. Each answer follows a committed audit event. 200 is success;
-- any other status is counted as an error.
local M = dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

local headers = {
   ["Authorization"] = "Bearer " .. M.key,
   ["Content-Type"] = "application/json",
}
local tokens = nil

function init(args)
   M.seed()
   tokens = M.load_tokens(os.getenv("BENCH_TOKENS"))
end

function request()
   local tok = tokens[math.random(1, #tokens)]
   return wrk.format("POST", "/v1/tokens/" .. tok .. "/detokenize", headers, "{}")
end
