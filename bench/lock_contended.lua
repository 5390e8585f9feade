-- A Lock contended by 2 processes: each does N acquire/release pairs with
-- an empty critical section; the metric is the wall time per pair. Same
-- workload as lock_contended.py.
local mp = require "corral"
local N = tonumber(os.getenv("BENCH_N") or "") or 200000
local lock, go = mp.Lock(), mp.Event()
local function work()
  go:wait()
  for _ = 1, N do lock:acquire(); lock:release() end
end
local ps = {}
for i = 1, 2 do ps[i] = mp.Process{ target = work }; ps[i]:start() end
local t0 = mp.time()
go:set()
for i = 1, 2 do ps[i]:join() end
print(("RESULT lock_pair_contended_2 %.1f ns"):format((mp.time() - t0) / (2 * N) * 1e9))
