-- Pool overheads and speedup; the same workloads as pool.py.
--   per-task cost over 100000 trivial tasks (default chunksize, chunksize 1),
--   apply_async round trip, primes below 2,000,000 in 64 chunks on 1 and 2 workers.
local mp = require "corral"
local N = tonumber(os.getenv("BENCH_N") or "") or 100000

local function double(x) return x * 2 end

local function count_primes(lo, hi)
  local n = 0
  for k = math.max(lo, 2), hi do
    local prime, d = true, 2
    while d * d <= k do
      if k % d == 0 then prime = false break end
      d = d + 1
    end
    if prime then n = n + 1 end
  end
  return n
end

local items = {}
for i = 1, N do items[i] = i end

do
  local pool <close> = mp.Pool(2)
  pool:map(double, { 1, 2, 3 })
  local t0 = mp.time()
  assert(#pool:map(double, items) == N)
  print(("RESULT map_default_per_task %.4f us"):format((mp.time() - t0) / N * 1e6))
  t0 = mp.time()
  assert(#pool:map(double, items, 1) == N)
  print(("RESULT map_chunksize1_per_task %.3f us"):format((mp.time() - t0) / N * 1e6))
  local M = 5000
  t0 = mp.time()
  for i = 1, M do pool:apply_async(double, { i }):get() end
  print(("RESULT apply_async_roundtrip %.2f us"):format((mp.time() - t0) / M * 1e6))
end

local LIMIT, CHUNKS = 2000000, 64
local ranges, step = {}, LIMIT // CHUNKS
for c = 0, CHUNKS - 1 do ranges[#ranges + 1] = { c * step, (c + 1) * step - 1 } end
local times = {}
for _, n in ipairs{ 1, 2 } do
  local pool <close> = mp.Pool(n)
  local t0 = mp.time()
  local total = 0
  for _, k in ipairs(pool:starmap(count_primes, ranges, 1)) do total = total + k end
  times[n] = mp.time() - t0
  assert(total == 148933, total)
  print(("RESULT primes_%dworker %.3f s"):format(n, times[n]))
end
print(("RESULT primes_speedup_1_to_2 %.2f x"):format(times[1] / times[2]))
