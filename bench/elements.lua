-- bench/elements.lua: the hosted card field's tokenize (docs/elements.md), as
-- the vault's card frame sends it from a buyer's browser
-- (service/elements/frame.js): POST /v1/tokens on the vault's own origin with
-- a publishable key bound to the shop's origin,
--   Origin: the vault's own origin (BENCH_VAULT_ORIGIN: the frame's page is
--           the vault's, so its fetch is same-origin)
--   CardVault-Frame-Origin: the shop page the frame is mounted in
--           (BENCH_FRAME_ORIGIN, on the key's allowed origins)
--   Idempotency-Key: a new one per request (the frame's randomKey(): 32 hex)
-- the headers a browser adds to such a fetch (no cookie, no referrer: the
-- frame sends neither), and the card without its security code. Every token
-- acknowledged with 201 is written to a file per thread, as tokenize.lua
-- does, and checked by run.sh afterwards. Any other status is an error.
local M = dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

local headers = {
   ["Authorization"] = "Bearer " .. M.key,
   ["Content-Type"] = "application/json",
   ["Origin"] = os.getenv("BENCH_VAULT_ORIGIN") or "",
   ["CardVault-Frame-Origin"] = os.getenv("BENCH_FRAME_ORIGIN") or "",
   ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
      .. "Chrome/131.0.0.0 Safari/537.36",
   ["Accept"] = "*/*",
   ["Accept-Language"] = "en-US,en;q=0.9",
   ["Accept-Encoding"] = "gzip, deflate, br, zstd",
   ["Sec-Fetch-Site"] = "same-origin",
   ["Sec-Fetch-Mode"] = "cors",
   ["Sec-Fetch-Dest"] = "empty",
}

-- Idempotency keys must never repeat within a bench run (the service would
-- answer 409 to a publishable key's second use): 8 hex digits of a hash of
-- this run's name (BENCH_TOKEN_OUT names each run), 8 random, the thread id
-- and a per-thread counter.
local run_hash = 5381
local salt = 0
local sent = 0

function init(args)
   M.seed()
   M.open_token_out()
   local name = os.getenv("BENCH_TOKEN_OUT") or ""
   for i = 1, #name do
      run_hash = (run_hash * 33 + name:byte(i)) % 4294967296
   end
   salt = math.random(0, 2147483647)
end

function request()
   sent = sent + 1
   headers["Idempotency-Key"] = string.format("%08x%08x%08x%08x", run_hash, salt, id, sent)
   return wrk.format("POST", "/v1/tokens", headers, M.frame_body())
end

M.on_response = M.record_token
