-- What tracing costs: the pool's chunksize-1 workload (bench/pool.lua:
-- 100000 trivial tasks, 2 workers) with tracing off and on, best of
-- ROUNDS each. With tracing on, every task is in a slice of the file
-- (these tasks take about a microsecond: back to back, they share slices;
-- see docs/observability.md).
--
-- The machine's noise is as large as the effect, so the run measures it
-- too: a third arm, "off again", is the off arm run once more; its
-- difference from off (trace_noise_aa) is what the same code differs from
-- itself in this run. Each round runs the three arms in a rotated order,
-- each after a full garbage collection: in a fixed order, the collector's
-- cycle lined up with the arms and made the second one about 9% slower
-- with tracing off in both.
--
-- Besides the wall time, the CPU time the parent and the workers spent
-- on the map (from /proc/PID/schedstat).
--   build/corral bench/trace.lua
local mp = require "corral"
local N = tonumber(os.getenv("BENCH_N") or "") or 100000
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "") or 6

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
  collectgarbage()
  collectgarbage()
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

local ARMS = { "off", "on", "off again" }
local best, size = {}, 0
for _, arm in ipairs(ARMS) do best[arm] = { math.huge, math.huge } end
for round = 1, ROUNDS do
  for i = 0, #ARMS - 1 do
    local arm = ARMS[(round + i) % #ARMS + 1]
    local wall, cpu = per_task(arm == "on")
    local b = best[arm]
    b[1], b[2] = math.min(b[1], wall), math.min(b[2], cpu or math.huge)
    if arm == "on" then
      local f = io.open(path, "rb")
      size = f:seek("end")
      f:close()
    end
  end
end
os.remove(path)
local off, on, again = best.off, best.on, best["off again"]
local function pct(a, b) return (a / b - 1) * 100 end
print(("RESULT trace_off_chunksize1_per_task %.3f us"):format(off[1]))
print(("RESULT trace_on_chunksize1_per_task %.3f us"):format(on[1]))
print(("RESULT trace_on_overhead %.1f %%"):format(pct(on[1], off[1])))
print(("RESULT trace_noise_aa %.1f %%"):format(pct(again[1], off[1])))
if off[2] < math.huge then
  print(("RESULT trace_off_chunksize1_cpu_per_task %.3f us"):format(off[2]))
  print(("RESULT trace_on_chunksize1_cpu_per_task %.3f us"):format(on[2]))
  print(("RESULT trace_on_cpu_overhead %.1f %%"):format(pct(on[2], off[2])))
end
print(("RESULT trace_bytes_per_task %.1f B"):format(size / N))
