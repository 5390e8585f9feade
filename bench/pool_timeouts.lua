-- How soon a Pool's per-task time limit fires, and what a limit costs a map.
-- Python's Pool has no per-task time limit: this workload has no .py twin.
--   timeout_<L>s_fires_after: seconds from apply_async of a task that runs
--     past its limit L to its Timeout error (best is L, plus the start of
--     the task); each the worst of three tries on one warm worker.
--   map_timeout_chunksize1_per_task: a map of 100000 trivial tasks, each
--     with a time limit (compare map_chunksize1_per_task in pool.lua).
local mp = require "corral"
local N = tonumber(os.getenv("BENCH_N") or "") or 100000
local TRIES = 3

local function overrun() mp.sleep(60) end
local function double(x) return x * 2 end

do
  local pool <close> = mp.Pool(1)
  for _, limit in ipairs{ 0.2, 0.5, 1.0, 2.0 } do
    local worst = 0
    for _ = 1, TRIES do
      pool:apply(double, 1) -- the worker that replaced the killed one is running
      local t0 = mp.time()
      local r = pool:apply_async(overrun, nil, { timeout = limit })
      local ok, err = pcall(r.get, r, limit + 30)
      local took = mp.time() - t0
      assert(not ok and mp.iserror(err, "Timeout") and err.message:find("time limit"), tostring(err))
      if took > worst then worst = took end
    end
    print(("RESULT timeout_%gs_fires_after %.3f s"):format(limit, worst))
  end
end

do
  local pool <close> = mp.Pool(2)
  local items = {}
  for i = 1, N do items[i] = i end
  pool:map(double, { 1, 2, 3 })
  local t0 = mp.time()
  assert(#pool:map(double, items, 1, { timeout = 30 }) == N)
  print(("RESULT map_timeout_chunksize1_per_task %.3f us"):format((mp.time() - t0) / N * 1e6))
end
