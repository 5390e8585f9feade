-- Process start+join latency: start a process whose target does nothing,
-- join it; repeated, per start method. Same workload as process_start.py.
local mp = require "corral"
local N = tonumber(os.getenv("BENCH_N") or "") or 300

local function noop() end

for _, method in ipairs({ "fork", "spawn" }) do
  local ctx = mp.get_context(method)
  local n = method == "spawn" and math.max(N // 3, 20) or N
  -- warm up
  for _ = 1, 5 do local p = ctx.Process{ target = noop }; p:start(); p:join() end
  local t0 = mp.time()
  for _ = 1, n do
    local p = ctx.Process{ target = noop }
    p:start()
    p:join()
    assert(p.exitcode == 0)
  end
  local dt = (mp.time() - t0) / n
  print(("RESULT start_join_%s %.4f ms"):format(method, dt * 1000))
end
