-- What tracing costs: the pool's chunksize-1 workload (bench/pool.lua:
-- 100000 trivial tasks, 2 workers) with tracing off and on, alternated,
-- best of ROUNDS each. With tracing on, every task is a slice in the file.
-- Besides the wall time, the CPU time the parent and the workers spent
-- on the map (from /proc/PID/schedstat), which a loaded machine disturbs
-- less.
--   build/corral bench/trace.lua
local mp = require "corral"
local N = tonumber(os.getenv("BENCH_N") or "") or 100000
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "") or 3

local function double(x) return x * 2 end
local items = {}
for i = 1, N do items[i] = i end

local path = os.getenv("BENCH_TRACE_FILE") or os.tmpname()

-- Nanoseconds the processes `pids` have run on a CPU.
local function cpu_ns(pids)
  local total = 0
  for _, pid in ipairs(pids) do
    local f = io.open("/proc/" .. pid .. "/schedstat")
    if not f then return nil end
    total = total + f:read("n")
    f:close()
  end
  return total
end

-- Per-task wall and CPU time, in microseconds, of one map over the items.
local function per_task(traced)
  if traced then mp.trace(path) end
  local pool <close> = mp.Pool(2)
  pool:map(double, { 1, 2, 3 })
  local pids = { mp.getpid() }
  for _, w in pairs(pool:stats().workers) do pids[#pids + 1] = w.pid end
  local c0, t0 = cpu_ns(pids), mp.time()
  assert(#pool:map(double, items, 1) == N)
  local wall, c1 = (mp.time() - t0) / N * 1e6, cpu_ns(pids)
  pool:close()
  pool:join()
  if traced then mp.trace(false) end
  return wall, c0 and c1 and (c1 - c0) / N / 1e3
end

local best = { [false] = { math.huge, math.huge }, [true] = { math.huge, math.huge } }
for _ = 1, ROUNDS do
  for _, traced in ipairs{ false, true } do
    local wall, cpu = per_task(traced)
    local b = best[traced]
    b[1], b[2] = math.min(b[1], wall), math.min(b[2], cpu or math.huge)
  end
end
local f = io.open(path, "rb")
local size = f:seek("end")
f:close()
os.remove(path)
local off, on = best[false], best[true]
print(("RESULT trace_off_chunksize1_per_task %.3f us"):format(off[1]))
print(("RESULT trace_on_chunksize1_per_task %.3f us"):format(on[1]))
print(("RESULT trace_on_overhead %.1f %%"):format((on[1] / off[1] - 1) * 100))
if off[2] < math.huge then
  print(("RESULT trace_off_chunksize1_cpu_per_task %.3f us"):format(off[2]))
  print(("RESULT trace_on_chunksize1_cpu_per_task %.3f us"):format(on[2]))
  print(("RESULT trace_on_cpu_overhead %.1f %%"):format((on[2] / off[2] - 1) * 100))
end
print(("RESULT trace_bytes_per_task %.0f B"):format(size / N))
