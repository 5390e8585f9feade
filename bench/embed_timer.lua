-- bench/embed_timer.lua: an embedding host's own timer while a pool and a
-- pipeline work. Builds examples/embed/host.c against this build
-- (build/libcorral.a) in a temporary directory, runs it RUNS times and
-- reports its 10 ms timer's worst lateness over all runs (the timer ticks
-- all through the pool's CPU-bound map_async and the pipeline started in
-- the background beside it: nothing corral does on the host's loop blocks
-- it), the median of the runs' worst, and the worst while the pipeline
-- worked. Lateness here is also the machine's:
-- with the pool's two workers busy, the host competes for a CPU; the
-- host also reports how long its loop's callbacks (corral's serving among
-- them) held the loop, and the CPU they used: corral's own share.
-- bench/embed_timer.py: the same timer on an asyncio loop beside a
-- multiprocessing Pool(2) doing the same map_async, and a second Pool(2)
-- doing the pipeline's map.
local build = os.getenv("CORRAL_BUILD_DIR") or "build"
local RUNS = tonumber(os.getenv("BENCH_RUNS") or "5")

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

local dir = io.popen("mktemp -d /tmp/corral-bench.XXXXXX"):read("l")
local exe = dir .. "/host"
local abs_build = io.popen("cd " .. build .. " && pwd"):read("l")
-- what libcorral.a needs (hiredis and libcrypto too, with the Redis backend)
local ok, out = sh(("cc -O2 -o %s examples/embed/host.c -Iengine/include %s/libcorral.a "
  .. "$(pkg-config --cflags --libs $(PKG_CONFIG_PATH=%s pkg-config --print-requires corral)) "
  .. "-lpthread -ldl -lm -DCORRAL_WORKER='\"%s/corral\"'"):format(exe, abs_build, abs_build, abs_build))
if not ok then
  os.execute("rm -rf " .. dir)
  error("cannot build the host: " .. out)
end
local worst, each, held, cpu, worst_pipe = 0, {}, 0, 0, 0
for _ = 1, RUNS do
  local rok, text = sh(exe)
  local late = text:match("worst lateness ([%d.]+) ms")
  if not rok or not late then
    os.execute("rm -rf " .. dir)
    error("the host failed:\n" .. text)
  end
  local lp = text:match("%(([%d.]+) ms while the pipeline worked%)")
  if not lp then
    os.execute("rm -rf " .. dir)
    error("the host did not run its pipeline:\n" .. text)
  end
  worst_pipe = math.max(worst_pipe, tonumber(lp))
  local h, c = text:match("held it at most ([%d.]+) ms at a time, using at most ([%d.]+) ms of CPU")
  held, cpu = math.max(held, tonumber(h)), math.max(cpu, tonumber(c))
  late = tonumber(late)
  each[#each + 1] = late
  if late > worst then worst = late end
end
os.execute("rm -rf " .. dir)
table.sort(each)
print(("RESULT timer_worst_lateness %.2f ms"):format(worst))
print(("RESULT timer_median_worst_lateness %.2f ms"):format(each[(#each + 1) // 2]))
print(("RESULT timer_worst_lateness_while_pipeline %.2f ms"):format(worst_pipe))
-- corral's side alone: the longest one poll's callbacks held the loop, and
-- the most CPU they used (the difference is time spent waiting for a CPU)
print(("RESULT loop_longest_callbacks %.2f ms"):format(held))
print(("RESULT loop_longest_callbacks_cpu %.2f ms"):format(cpu))
