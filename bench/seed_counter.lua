-- The seed's counter: two processes, one adding 1 and one subtracting 1,
-- 100000 times each, under the Value's lock; the total time including the
-- processes' start and join. Then the same with atomic add and no lock.
-- Same workload as seed_counter.py (which has no atomic add).
local mp = require "corral"
local N = 100000

local function run(counter, work)
  local t0 = mp.time()
  local a = mp.Process{ target = work, args = { counter, 1 } }
  local b = mp.Process{ target = work, args = { counter, -1 } }
  a:start(); b:start(); a:join(); b:join()
  assert(counter.value == 0, "counter ended at " .. counter.value)
  return (mp.time() - t0) * 1000
end

local best, best_add = math.huge, math.huge
for _ = 1, 3 do
  best = math.min(best, run(mp.Value('i', 0), function(c, d)
    local lock = c:get_lock()
    for _ = 1, N do
      lock:acquire()
      c.value = c.value + d
      lock:release()
    end
  end))
  best_add = math.min(best_add, run(mp.RawValue('i', 0), function(c, d)
    for _ = 1, N do c:add(d) end
  end))
end
print(("RESULT seed_counter_locked %.1f ms"):format(best))
print(("RESULT seed_counter_atomic_add %.1f ms"):format(best_add))
