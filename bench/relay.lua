-- bench/relay.lua: POST /v1/relay/{destination} with one token and a body
-- template holding the card number and expiry (no security code: a hold serves
-- one relay, and its creation is a request of its own). Or, with
-- BENCH_RELAY_DIRECT=1, the same rendered-size body straight to the fake
-- processor: the limit the relay is compared to. Any status but 200 is an
-- error.
local key = os.getenv("BENCH_RELAY_KEY") or ""
local token = os.getenv("BENCH_RELAY_TOKEN") or ""
local direct = os.getenv("BENCH_RELAY_DIRECT") == "1"
local errors = 0

local template = '{"amount":1000,"currency":"eur","number":"{{card.number}}",'
   .. '"exp":"{{card.exp_month}}/{{card.exp_year2}}"}'
local rendered = '{"amount":1000,"currency":"eur","number":"4000000000000002",'
   .. '"exp":"04/29"}'

function request()
   if direct then
      return wrk.format("POST", "/v1/charges", {["Content-Type"] = "application/json"}, rendered)
   end
   local body = '{"method":"POST","path":"/v1/charges","headers":{"Content-Type":'
      .. '"application/json"},"tokens":{"card":"' .. token .. '"},"body":'
      .. string.format("%q", template):gsub("\\\n", "\\n") .. '}'
   return wrk.format("POST", "/v1/relay/bench", {
      ["Authorization"] = "Bearer " .. key,
      ["Content-Type"] = "application/json",
   }, body)
end

function response(status, headers, body)
   if status ~= 200 then
      errors = errors + 1
   end
end

function done(summary, latency, requests)
   io.stderr:write(string.format("non-200: %d\n", summary.errors.status + errors))
end
