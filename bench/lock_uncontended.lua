-- Uncontended Lock acquire/release pair, in one process. Same workload as
-- lock_uncontended.py.
local mp = require "corral"
local N = tonumber(os.getenv("BENCH_N") or "") or 2000000
local lock = mp.Lock()
for _ = 1, 10000 do lock:acquire(); lock:release() end
local best = math.huge
for _ = 1, 3 do
  local t0 = mp.time()
  for _ = 1, N do lock:acquire(); lock:release() end
  best = math.min(best, (mp.time() - t0) / N)
end
print(("RESULT lock_pair_uncontended %.1f ns"):format(best * 1e9))
