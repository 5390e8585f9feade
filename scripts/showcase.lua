-- showcase: what corral does, in one short run.
--   corral scripts/showcase.lua [limit]
-- Counts the primes below `limit` three ways: in this process, with a Pool
-- of workers (closures as tasks), and with a producer/consumer chain of
-- processes over Queues; then shows that a killed worker does not hang the
-- pool.
local mp = require "corral"
local limit = tonumber(arg and arg[1]) or 2000000
local workers = mp.cpu_count()

local function count_primes(lo, hi)
  local n = 0
  for k = math.max(lo, 2), hi do
    local prime = true
    local d = 2
    while d * d <= k do
      if k % d == 0 then prime = false break end
      d = d + 1
    end
    if prime then n = n + 1 end
  end
  return n
end

local function ranges(parts)
  local out, step = {}, math.ceil(limit / parts)
  for lo = 1, limit, step do out[#out + 1] = { lo, math.min(lo + step - 1, limit - 1) } end
  return out
end

print(("corral %s: primes below %d, %d workers, start method %s"):format(
  mp.VERSION, limit, workers, mp.get_start_method()))

local t0 = mp.time()
local serial = count_primes(1, limit - 1)
local t_serial = mp.time() - t0
print(("  one process     %8d primes in %.2fs"):format(serial, t_serial))

-- 1. a pool: the task is a local function, sent to the workers as is
t0 = mp.time()
local pooled = 0
do
  local pool <close> = mp.Pool(workers)
  for _, n in ipairs(pool:starmap(count_primes, ranges(64))) do pooled = pooled + n end
end
local t_pool = mp.time() - t0
print(("  Pool(%d)         %8d primes in %.2fs (%.2fx)"):format(workers, pooled, t_pool, t_serial / t_pool))

-- 2. a chain of processes over bounded queues: ranges -> counters -> summer
t0 = mp.time()
local jobs, counts = mp.Queue(16), mp.Queue(16)
local counters = {}
for i = 1, workers do
  counters[i] = mp.Process{ name = "counter-" .. i, target = function()
    for r in jobs:iter() do counts:put(count_primes(r[1], r[2])) end
  end }
  counters[i]:start()
end
local parts = ranges(64)
local feeder = mp.Process{ name = "feeder", target = function()
  for _, r in ipairs(parts) do jobs:put(r) end
  jobs:close()
end }
feeder:start()
local chained = 0
for _ = 1, #parts do chained = chained + counts:get() end
feeder:join()
for _, p in ipairs(counters) do p:join() end
print(("  Queue chain     %8d primes in %.2fs"):format(chained, mp.time() - t0))
assert(serial == pooled and serial == chained, "the three counts differ")

-- 3. a worker killed mid-task: its task fails with WorkerLost, nothing hangs
do
  local pool <close> = mp.Pool(2)
  local doomed = pool:apply_async(function() os.execute("kill -KILL " .. mp.getpid()) mp.sleep(60) end)
  local ok, err = pcall(doomed.get, doomed, 30)
  print(("  killed worker   %s"):format(ok and "no error?" or tostring(err.kind .. ": " .. err.message)))
  print(("  pool goes on    7*6 = %d"):format(pool:apply(function(a, b) return a * b end, 7, 6)))
end
