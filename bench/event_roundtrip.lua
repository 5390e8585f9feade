-- Event wakeup round trip between two processes: the parent sets `ping`,
-- the child waits for it, clears it and sets `pong`, which the parent
-- waits for and clears. Same workload as event_roundtrip.py.
local mp = require "corral"
local N = tonumber(os.getenv("BENCH_N") or "") or 5000
local ping, pong = mp.Event(), mp.Event()
local p = mp.Process{ target = function()
  for _ = 1, N + 100 do ping:wait(); ping:clear(); pong:set() end
end }
p:start()
for _ = 1, 100 do ping:set(); pong:wait(); pong:clear() end
local t0 = mp.time()
for _ = 1, N do ping:set(); pong:wait(); pong:clear() end
print(("RESULT event_roundtrip %.2f us"):format((mp.time() - t0) / N * 1e6))
p:join()
