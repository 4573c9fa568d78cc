-- bench/tokenize.lua: POST /v1/tokens with a new Luhn-valid card each time
-- (publishable key). Every token acknowledged with 201 is written to a file
-- per thread (BENCH_TOKEN_OUT.<thread>) so that run.sh can check afterwards
-- that each one is in the database. Any other status is counted as an error.
local M = dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

local headers = {
   ["Authorization"] = "Bearer " .. M.key,
   ["Content-Type"] = "application/json",
}

function init(args)
   M.seed()
   M.open_token_out()
end

function request()
   return wrk.format("POST", "/v1/tokens", headers, M.tokenize_body())
end

M.on_response = M.record_token
