-- bench/common.lua: what every wrk script of `make bench` shares (loaded with
-- dofile by tokenize.lua, elements.lua, read.lua, detokenize.lua and bare.lua).
--
-- Environment (set by bench/run.sh):
--   BENCH_KEY        API key sent as "Authorization: Bearer ..."
--   BENCH_EXPECT     the only status counted as success (201 or 200)
--   BENCH_RESULT     done() writes the run's JSON summary here
--   BENCH_RATE       total requests/s to pace to (0 or unset: as fast as possible).
--                    Pacing is wrk's delay() hook: each thread hands out send
--                    slots 1/rate apart (a constant-rate schedule, clock_gettime
--                    through LuaJIT's ffi), so with enough connections the
--                    offered load is the target rate. Latency is still measured
--                    from the moment a request is written (wrk, not wrk2: a
--                    request delayed behind a slow one is not charged for the
--                    wait), which is why the half-load figure is run far below
--                    saturation where such queueing is rare.
--   BENCH_TOKEN_OUT  (tokenize, elements) prefix of the per-thread files of
--                    acknowledged tokens
--   BENCH_TOKENS     (read, detokenize) file of tokens to request, one a line
--
-- Counters live in each thread's Lua state; done() (main state) collects them
-- with thread:get() (wrk copies numbers, strings and tables).
local M = {}

M.key = os.getenv("BENCH_KEY") or ""
M.expect = tonumber(os.getenv("BENCH_EXPECT") or "200")
M.result_path = os.getenv("BENCH_RESULT")
M.rate = tonumber(os.getenv("BENCH_RATE") or "0") or 0

-- per-thread state (each thread has its own Lua state and copy of these)
ok_count = 0
bad_count = 0
statuses = {}
id = id or 0

local threads = {}
local next_id = 1

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

-- Pacing (only defined when BENCH_RATE > 0: a delay() hook makes wrk go
-- through a timer for every request, which would cost the unpaced runs).
if M.rate > 0 then
   local ffi = require("ffi")
   ffi.cdef [[
      typedef struct { long tv_sec; long tv_nsec; } cv_bench_timespec;
      int clock_gettime(int clk_id, cv_bench_timespec *tp);
   ]]
   local ts = ffi.new("cv_bench_timespec")
   local function now_ms()
      ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
   end
   local next_slot = nil
   local interval = nil
   function delay()
      local now = now_ms()
      if interval == nil then
         -- this thread's share of the rate (threads split it evenly)
         local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
         interval = 1000.0 * nthreads / M.rate
         next_slot = now
      end
      -- never bank more than one interval of idle time (no bursts after a stall)
      if next_slot < now - interval then
         next_slot = now - interval
      end
      local slot = next_slot
      next_slot = next_slot + interval
      local d = slot - now
      if d < 0 then
         return 0
      end
      return math.floor(d + 0.5)
   end
end

function M.count(status)
   if status == M.expect then
      ok_count = ok_count + 1
   else
      bad_count = bad_count + 1
   end
   statuses[status] = (statuses[status] or 0) + 1
end

function response(status, headers, body)
   M.count(status)
   if M.on_response then
      M.on_response(status, headers, body)
   end
end

function done(summary, latency, requests)
   local ok, bad = 0, 0
   local merged = {}
   for _, t in ipairs(threads) do
      ok = ok + (t:get("ok_count") or 0)
      bad = bad + (t:get("bad_count") or 0)
   end
   for _, t in ipairs(threads) do
      for code, n in pairs(t:get("statuses") or {}) do
         merged[tostring(code)] = (merged[tostring(code)] or 0) + n
      end
   end
   local st = {}
   for code, n in pairs(merged) do
      st[#st + 1] = string.format('"%s":%d', code, n)
   end
   local e = summary.errors
   local dur = summary.duration / 1e6
   local json = string.format(
      '{"requests":%d,"duration_s":%.3f,"rps":%.1f,"bytes":%d,' ..
      '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
      '"http_errors":%d,"ok":%d,"unexpected_status":%d,"statuses":{%s},' ..
      '"latency_ms":{"p50":%.3f,"p90":%.3f,"p99":%.3f,"p999":%.3f,"mean":%.3f,"max":%.3f},' ..
      '"target_rate":%s}',
      summary.requests, dur, summary.requests / dur, summary.bytes,
      e.connect, e.read, e.write, e.timeout,
      e.status, ok, bad, table.concat(st, ","),
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
      latency.mean / 1000, latency.max / 1000,
      M.rate > 0 and tostring(M.rate) or "null")
   if M.result_path then
      local f = assert(io.open(M.result_path, "w"))
      f:write(json, "\n")
      f:close()
   end
   io.write(string.format("p99.9 latency: %.3f ms; %d x %d, %d other\n",
      latency:percentile(99.9) / 1000, ok, M.expect, bad))
end

-- Luhn-valid PANs: a brand prefix, random digits, the check digit.
local function luhn_pan(prefix, len)
   local d = {}
   for i = 1, #prefix do
      d[i] = prefix:byte(i) - 48
   end
   for i = #prefix + 1, len - 1 do
      d[i] = math.random(0, 9)
   end
   local sum, double = 0, true
   for i = len - 1, 1, -1 do
      local v = d[i]
      if double then
         v = v * 2
         if v > 9 then
            v = v - 9
         end
      end
      sum = sum + v
      double = not double
   end
   d[len] = (10 - sum % 10) % 10
   return table.concat(d)
end
M.luhn_pan = luhn_pan

local exp_year = os.date("*t").year + 3
local prefixes = { "4", "4", "51", "52", "53", "54", "55" } -- visa and mastercard, 16 digits

-- A tokenize body as a checkout page sends it: a new card each time.
function M.tokenize_body()
   local pan = luhn_pan(prefixes[math.random(1, #prefixes)], 16)
   return string.format('{"pan":"%s","exp_month":%d,"exp_year":%d,"cvc":"%03d"}',
      pan, math.random(1, 12), exp_year, math.random(0, 999))
end

-- The body the card frame's fetch sends (service/elements/frame.js): the
-- card without its security code, which the frame checks and never sends
-- with the card.
function M.frame_body()
   local pan = luhn_pan(prefixes[math.random(1, #prefixes)], 16)
   return string.format('{"pan":"%s","exp_month":%d,"exp_year":%d}',
      pan, math.random(1, 12), exp_year)
end

-- Acknowledged tokens (tokenize.lua, elements.lua): M.open_token_out() in
-- init() opens this thread's file BENCH_TOKEN_OUT.<thread>;
-- M.record_token as M.on_response writes the token of every 201 to it, and
-- counts a 201 without a token as an error.
local token_out = nil
local tokens_written = 0

function M.open_token_out()
   local prefix = os.getenv("BENCH_TOKEN_OUT")
   if prefix then
      token_out = assert(io.open(prefix .. "." .. tostring(id), "w"))
      token_out:setvbuf("full")
   end
end

function M.record_token(status, hdrs, body)
   if status == 201 and token_out then
      local tok = string.match(body, '"token"%s*:%s*"(tok_[0-9A-Za-z]+)"')
      if tok then
         token_out:write(tok, "\n")
         tokens_written = tokens_written + 1
         -- wrk exits without closing thread states: flush often enough that
         -- at most the tail is left to the C library's exit-time flush
         if tokens_written % 512 == 0 then
            token_out:flush()
         end
      else
         -- a 201 without a token is a broken response: count it as an error
         ok_count = ok_count - 1
         bad_count = bad_count + 1
      end
   end
end

function M.seed()
   math.randomseed(os.time() * 1000 + (id or 0) * 7919 + math.floor(os.clock() * 1e6))
   -- LuaJIT's first values after seeding are weakly mixed: discard some
   for _ = 1, 16 do
      math.random()
   end
end

function M.load_tokens(path)
   local list = {}
   for line in io.lines(path) do
      if #line > 0 then
         list[#list + 1] = line
      end
   end
   assert(#list > 0, "no tokens in " .. path)
   return list
end

return M
