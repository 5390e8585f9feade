-- For the Redis specs: a redis-server of their own on a free loopback port
-- in a temporary directory, and "machines": independent corral processes
-- (started with io.popen) that share no arena with the spec. Nothing here
-- talks to any address but 127.0.0.1. redis-server must be installed
-- (tools/deps.sh installs it): without it the specs fail, they never skip.
local H = require "spec.helper"
local socket = require "socket"
local mp = H.mp

local R = {}

-- Servers still running when the Lua state closes (a spec that broke off
-- before its teardown) are stopped then.
local running = setmetatable({}, { __gc = function(t)
  for srv in pairs(t) do pcall(srv.stop) end
end })
R._running = running

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

-- The kind of the error f(...) raises (asserting that it raises), and the error.
function R.kind_of(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error")
  return mp.iserror(err) and err.kind or tostring(err), err
end

-- A free TCP port on 127.0.0.1 (the kernel's choice, released at once).
local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Starts redis-server; opts.appendonly for a server whose data survives a
-- restart, opts.password for one that wants it. Returns a server object
-- (`into` when given, filled in): url, port, dir, pid, stop(), kill(),
-- launch() (after kill), restart().
function R.start(opts, into)
  opts = opts or {}
  assert(sh("command -v redis-server >/dev/null 2>&1"),
    "redis-server is not installed (tools/deps.sh installs it): the Redis specs need it")
  local srv = into or {}
  srv.port = opts.port or free_port()
  local base = os.tmpname()
  os.remove(base)
  srv.dir = base .. ".redis"
  srv.url = ("redis://127.0.0.1:%d"):format(srv.port)
  assert(sh("mkdir -p " .. H.shell_quote(srv.dir)))
  function srv.launch()
    os.remove(srv.dir .. "/redis.pid") -- a killed server's: never taken for the new one's
    local args = { -- not under a sanitizer runtime that the specs may preload
      "env -u LD_PRELOAD redis-server", "--bind", "127.0.0.1", "--port", tostring(srv.port), "--dir", srv.dir,
      "--save", "''", "--daemonize", "yes", "--pidfile", srv.dir .. "/redis.pid",
      "--logfile", srv.dir .. "/redis.log", "--protected-mode", "yes",
    }
    if opts.appendonly then
      args[#args + 1] = "--appendonly yes --appendfsync always"
    else
      args[#args + 1] = "--appendonly no"
    end
    if opts.password then args[#args + 1] = "--requirepass " .. opts.password end
    assert(sh(table.concat(args, " ")), "redis-server did not start")
    local up = H.wait_until(function()
      local c = socket.tcp()
      c:settimeout(0.2)
      local ok = c:connect("127.0.0.1", srv.port)
      c:close()
      local pid = ok and read_file(srv.dir .. "/redis.pid")
      return pid and tonumber(pid:match("^%d+\n"))
    end, 10)
    assert(up, "redis-server did not come up on port " .. srv.port .. ": " .. (read_file(srv.dir .. "/redis.log") or ""))
    srv.pid = up
  end
  local function wait_gone()
    assert(H.wait_until(function() return not sh("kill -0 " .. srv.pid .. " 2>/dev/null") end, 10),
      "redis-server did not stop")
  end
  -- Kills the server at once (SIGKILL): what it had not written is lost.
  function srv.kill()
    sh("kill -9 " .. srv.pid .. " 2>/dev/null")
    wait_gone()
  end
  function srv.restart()
    srv.kill()
    srv.launch()
  end
  function srv.stop()
    running[srv] = nil
    if srv.pid then
      sh("kill " .. srv.pid .. " 2>/dev/null")
      wait_gone()
      srv.pid = nil
    end
    sh("rm -rf " .. H.shell_quote(srv.dir))
  end
  srv.launch()
  running[srv] = true
  return srv
end

-- For the describe block it is called in: a server of the block's own
-- (R.start(opts)), started before the block's first test and stopped
-- after its last (its directory removed), and after each test the spec
-- helper's cleanup and the check that no child is left. Returns the
-- server object, filled in once the block runs.
function R.server(opts)
  local busted = require "busted" -- a module does not see the spec file's globals
  local srv = {}
  busted.setup(function() R.start(opts, srv) end)
  busted.teardown(function() if srv.stop then srv.stop() end end)
  busted.after_each(function()
    R.stop_machines()
    H.cleanup()
    H.assert_no_children()
  end)
  return srv
end

-- The machines R.spawn started that nobody waited for yet.
local machines = {}

-- Stops each machine a test left running (it failed before it stopped
-- them): SIGINT, up to 10 s for it to end, then SIGKILL to it and what it
-- started; reaps it. Later tests then start from nothing.
function R.stop_machines()
  for m in pairs(machines) do
    m.kill("INT")
    local function ended() -- (a zombie until m.wait reaps it)
      local st = H.ps("stat=", m.pid)
      return #H.child_pids(m.pid) == 0 and (st == "" or st:match("^Z") ~= nil)
    end
    if not H.wait_until(ended, 10) then
      for _, pid in ipairs(H.child_pids(m.pid)) do sh("kill -KILL " .. pid .. " 2>/dev/null") end
      m.kill("KILL")
    end
    m.wait()
  end
end

-- Runs the corral executable with args (an array) as an independent
-- process (a "machine"), its stderr with its stdout. Returns a handle:
-- pid, proc (the pipe from its output), wait() -> output, exit code;
-- kill(sig).
function R.spawn(args, env)
  local pidf = os.tmpname()
  local envs = ""
  for k, v in pairs(env or {}) do envs = envs .. k .. "=" .. H.shell_quote(v) .. " " end
  local words = {}
  for i, a in ipairs(args) do words[i] = H.shell_quote(a) end
  local inner = ("echo $$ > %s; exec env %s %s %s"):format(pidf, envs, H.shell_quote(H.exe), table.concat(words, " "))
  local p = io.popen("sh -c " .. H.shell_quote(inner) .. " 2>&1 </dev/null", "r")
  local m = { proc = p }
  assert(H.wait_until(function()
    local s = read_file(pidf)
    m.pid = s and tonumber(s:match("%d+"))
    return m.pid
  end, 10), "the machine did not start")
  os.remove(pidf)
  machines[m] = true
  function m.wait()
    machines[m] = nil
    local out = p:read("a")
    local _, _, code = p:close()
    return out, code
  end
  function m.kill(sig)
    sh("kill -" .. (sig or "KILL") .. " " .. m.pid .. " 2>/dev/null")
  end
  return m
end

-- Runs a Lua chunk on a "machine" (R.spawn); `src` may use the global URL.
function R.machine(src, url, env)
  return R.spawn({ H.script("URL = " .. string.format("%q", url) .. "\n" .. src) }, env)
end

return R
