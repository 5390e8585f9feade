-- Sharing a queue between machines: a Redis Queue's put->get rate between
-- two independent corral processes over loopback (the producer another
-- "machine": it shares no arena with the consumer), beside Python's stdlib
-- way (redis_queue.py: a BaseManager serving a queue.Queue over TCP). The
-- rate is measured in the consumer from its first item to its last. Then
-- a Redis Pool's tasks/s with two remote workers (`corral worker`), with
-- chunksize 1 and the default. The bench starts its own redis-server on a
-- free 127.0.0.1 port in a temporary directory and stops it after.
local mp = require "corral"
local socket = require "socket"
local N = tonumber(os.getenv("BENCH_N") or "") or 400000
N = N // 4
local exe = (os.getenv("CORRAL_BUILD_DIR") or "build") .. "/corral"

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function slurp(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local s = assert(socket.bind("127.0.0.1", 0))
local _, port = s:getsockname()
s:close()
local dir = os.tmpname()
os.remove(dir)
assert(sh("mkdir -p " .. dir))
assert(sh(("redis-server --bind 127.0.0.1 --port %d --dir %s --save '' --appendonly no --daemonize yes "
  .. "--pidfile %s/redis.pid --logfile %s/redis.log"):format(port, dir, dir, dir)), "redis-server did not start")
local url = "redis://127.0.0.1:" .. port
local pid
local deadline = mp.time() + 10
repeat
  local p = slurp(dir .. "/redis.pid")
  pid = p and tonumber(p:match("^(%d+)\n"))
  local c = socket.tcp()
  c:settimeout(0.1)
  local up = c:connect("127.0.0.1", port)
  c:close()
  if not (pid and up) then mp.sleep(0.01) end
until (pid and up) or mp.time() > deadline
assert(pid, "redis-server did not come up")

local function finish()
  sh("kill " .. pid)
  local until_t = mp.time() + 10
  while sh("kill -0 " .. pid .. " 2>/dev/null") and mp.time() < until_t do mp.sleep(0.01) end
  sh("rm -rf " .. dir)
end

local ok, err = pcall(function()
  -- put -> get between two machines
  local q = mp.Queue{ url = url, name = "bench" }
  local prod = io.popen(("%s -e %q"):format(exe, ([[
    local mp = require "corral"
    local q = mp.Queue{ url = %q, name = "bench" }
    for i = 1, %d do q:put(i) end
  ]]):format(url, N)))
  q:get(30)
  local t0 = mp.time()
  for _ = 2, N do q:get(30) end
  local dt = mp.time() - t0
  prod:close()
  print(("RESULT remote_queue_put_get %.0f items/s"):format((N - 1) / dt))

  -- a pool with two remote workers
  local w = io.popen(("CORRAL_AUTHKEY=bench exec %s worker %s/render --workers 2 2>&1"):format(exe, url))
  local pool = mp.Pool(0, { broker = url, name = "render", authkey = "bench" })
  local items = {}
  for i = 1, 20000 do items[i] = i end
  local function square(x) return x * x end
  pool:map(square, { 1, 2, 3, 4 }, 1) -- the workers are up
  local t1 = mp.time()
  pool:map(square, items, 1)
  print(("RESULT remote_pool_chunksize_1 %.0f tasks/s"):format(#items / (mp.time() - t1)))
  local t2 = mp.time()
  pool:map(square, items)
  print(("RESULT remote_pool_default_chunksize %.0f tasks/s"):format(#items / (mp.time() - t2)))
  pool:terminate()
  -- the worker machine's supervisor: stopped by SIGINT
  local pids = io.popen("pgrep -f '" .. exe .. " worker " .. url .. "/render' -P " .. mp.getpid())
  for line in pids:lines() do sh("kill -INT " .. line) end
  pids:close()
  w:close()
end)
finish()
if not ok then error(err, 0) end
