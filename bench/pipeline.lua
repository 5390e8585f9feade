-- Pipelines: the same workloads as pipeline.py (Python's hand-rolled
-- multiprocessing pipeline).
--   200k small ints through two trivial 2-worker stages, unordered and ordered
--   (and the CPU time that takes per item, in every process: a figure the
--   machine's other load does not change);
--   a CPU-bound stage on 1 and 2 workers (speedup); 1 KiB strings.
local mp = require "corral"
local N = tonumber(os.getenv("BENCH_N") or "") or 200000

local function inc(x) return x + 1 end
local function dbl(x) return x * 2 end
local function burn(x)
  local s = 0
  for i = 0, 19999 do s = s + (i * x) % 7 end
  return s
end

local items = {}
for i = 1, N do items[i] = i end

-- CPU seconds used so far by this process and its reaped children
-- (/proc/self/stat: utime, stime, cutime, cstime), which do not depend on
-- what else the machine runs.
local function cpu_seconds()
  local f = assert(io.open("/proc/self/stat"))
  local st = f:read("a")
  f:close()
  local fields = {}
  for x in st:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = x end
  local ticks = 0
  for i = 12, 15 do ticks = ticks + tonumber(fields[i]) end -- fields 14-17 of stat(5)
  local p = io.popen("getconf CLK_TCK")
  local hz = tonumber(p:read("l"))
  p:close()
  return ticks / hz
end

local function trivial(ordered)
  local t0, c0 = mp.time(), cpu_seconds()
  local r = mp.pipeline(items)
    :map(inc, { workers = 2, ordered = ordered })
    :map(dbl, { workers = 2, ordered = ordered })
    :run()
  assert(#r == N)
  return N / (mp.time() - t0), (cpu_seconds() - c0) / N
end

mp.pipeline({ 1, 2, 3 }):map(inc, { workers = 2 }):run()
local rate, cpu = trivial(false)
print(("RESULT trivial_2x2_unordered %.0f items/s"):format(rate))
print(("RESULT trivial_2x2_unordered_cpu_per_item %.3f us"):format(cpu * 1e6))
print(("RESULT trivial_2x2_ordered %.0f items/s"):format(trivial(true)))

-- long enough that starting the workers is a small part of it; 1 and 2
-- workers in turn, the best of five each (BENCH_ROUNDS), as other load on
-- the machine only ever slows a run
-- The same rounds also time the bare work: the M items burnt in this
-- process, and in two plain processes half each: what two processes give
-- on this machine at the time, the ceiling of the pipeline's speedup (a
-- virtual machine's two CPUs do not always give two).
local M = 2000
local function burn_range(lo, hi) for i = lo, hi do burn(items[i]) end end
local times, bare = { math.huge, math.huge }, { math.huge, math.huge }
for _ = 1, tonumber(os.getenv("BENCH_ROUNDS") or "") or 5 do
  for _, w in ipairs{ 1, 2 } do
    local t0 = mp.time()
    local r = mp.pipeline({ table.unpack(items, 1, M) }):map(burn, { workers = w }):run()
    assert(#r == M)
    times[w] = math.min(times[w], mp.time() - t0)
  end
  local t0 = mp.time()
  burn_range(1, M)
  bare[1] = math.min(bare[1], mp.time() - t0)
  t0 = mp.time()
  local ps = { mp.Process{ target = burn_range, args = { 1, M // 2 } },
               mp.Process{ target = burn_range, args = { M // 2 + 1, M } } }
  for _, p in ipairs(ps) do p:start() end
  for _, p in ipairs(ps) do assert(p:join(60) and p.exitcode == 0) end
  bare[2] = math.min(bare[2], mp.time() - t0)
end
print(("RESULT cpu_stage_1_worker %.0f items/s"):format(M / times[1]))
print(("RESULT cpu_stage_2_workers %.0f items/s"):format(M / times[2]))
print(("RESULT cpu_stage_speedup %.2f x"):format(times[1] / times[2]))
print(("RESULT cpu_bare_2_processes_speedup %.2f x"):format(bare[1] / bare[2]))

local K = N // 4
local strings = {}
for i = 0, K - 1 do strings[i + 1] = ("%04d"):format(i % 10000):rep(256) end
local t0 = mp.time()
local r = mp.pipeline(strings)
  :map(string.upper, { workers = 2, ordered = false })
  :map(string.reverse, { workers = 2, ordered = false })
  :run()
assert(#r == K)
print(("RESULT strings_1k_2x2 %.0f items/s"):format(K / (mp.time() - t0)))
