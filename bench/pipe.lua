-- Pipe round-trip latency: an echo process; send a small integer, wait for
-- it to come back, repeat. Same workload as pipe.py.
local mp = require "corral"
local N = tonumber(os.getenv("BENCH_N") or "") or 100000
local ctx = mp.get_context("fork")

local function echo(other, conn)
  other:close() -- an inherited unused end would keep the stream open
  while true do
    local v, why = conn:recv()
    if why then return end
    conn:send(v)
  end
end

local a, b = mp.Pipe()
local p = ctx.Process { target = echo, args = { a, b } }
p:start()
b:close()
for i = 1, 1000 do a:send(i); a:recv() end -- warm up
local t0 = mp.time()
for i = 1, N do
  a:send(i)
  a:recv()
end
local dt = mp.time() - t0
a:close()
p:join()
print(("RESULT pipe_roundtrip %.2f us"):format(dt / N * 1e6))
