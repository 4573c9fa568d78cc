-- bench/read.lua: GET /v1/tokens/{token} (secret key) over tokens created by
-- the tokenize run (BENCH_TOKENS), picked at random. 200 is success; any
-- other status is counted as an error.
local M = dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

local headers = { ["Authorization"] = "Bearer " .. M.key }
local tokens = nil

function init(args)
   M.seed()
   tokens = M.load_tokens(os.getenv("BENCH_TOKENS"))
end

function request()
   return wrk.format("GET", "/v1/tokens/" .. tokens[math.random(1, #tokens)], headers, nil)
end
