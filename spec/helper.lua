-- Shared by every spec: finds the built module, and gives helpers to wait
-- on things with a timeout, run the corral executable, and check that a
-- test left no child process behind.
local build = os.getenv("CORRAL_BUILD_DIR") or "build"
if not package.cpath:find(build .. "/?.so", 1, true) then
  package.cpath = build .. "/?.so;" .. package.cpath
end

local mp = require "corral"
local H = { mp = mp, build = build, exe = build .. "/corral" }

H.method = mp.get_start_method()

-- Whether this run is under the sanitizers (tools/test.sh preloads their
-- runtimes): every process start there costs tens of milliseconds more.
H.sanitized = (os.getenv("LD_PRELOAD") or ""):find("libasan", 1, true) ~= nil

-- Waits until pred() is true or `timeout` seconds pass; returns pred's last
-- value. It checks every few milliseconds: it waits on the thing itself.
function H.wait_until(pred, timeout)
  local deadline = mp.time() + (timeout or 10)
  while true do
    local v = pred()
    if v or mp.time() > deadline then return v end
    mp.sleep(0.002)
  end
end

-- Starts a Process running fn(...) and returns it.
function H.start(fn, ...)
  local p = mp.Process{ target = fn, args = table.pack(...) }
  p:start()
  return p
end

-- Joins p (within `timeout`, default 60 s) and asserts that it exited 0.
function H.join_ok(p, timeout)
  if not p:join(timeout or 60) then
    -- where it is stuck, for the log: its state, kernel stack and threads
    local f = io.popen(("grep -E '^(State|Threads):' /proc/%d/status; cat /proc/%d/stack 2>&1; "
      .. "env -u LD_PRELOAD gdb -p %d -batch -ex 'thread apply all bt' 2>&1 | grep '^#\\|^Thread'"):format(p.pid, p.pid, p.pid))
    local where = f:read("a")
    f:close()
    error("process did not end (pid " .. p.pid .. "):\n" .. where, 2)
  end
  assert(p.exitcode == 0, "exit code " .. tostring(p.exitcode))
end

-- Calls fn(...), which must raise a corral error object (of `kind`, when
-- it is not nil); returns that error.
function H.raises(kind, fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error" .. (kind and " of kind " .. kind or ""))
  assert(mp.iserror(err, kind), "expected " .. (kind or "an error object") .. ", got " .. tostring(err))
  return err
end

-- The kind and message of the error object fn(...) must raise.
function H.kind_of(fn, ...)
  local err = H.raises(nil, fn, ...)
  return err.kind, err.message
end

-- Whether process pid has ended within `timeout` seconds (default 10):
-- gone, or a zombie not reaped yet. An orphan's reaping is its new
-- parent's (init's) business, and init may take a second or two; a
-- zombie of our own is what H.assert_no_children reports.
function H.ended(pid, timeout)
  return H.wait_until(function()
    local f = io.open("/proc/" .. pid .. "/stat")
    if not f then return true end
    local st = f:read("a") -- nil when the process was reaped since the open
    f:close()
    return st == nil or st:match("^%d+ %b() (%a)") == "Z"
  end, timeout or 10)
end

-- pids of this process's children (zombies included). The ps that lists
-- them is one of our children too: it execs in place of the shell and is
-- recognised by its own command line.
function H.child_pids(ppid)
  ppid = ppid or mp.getpid()
  local out = {}
  local query = "ps -o pid=,args= --ppid " .. ppid
  local p = io.popen("exec env -u LD_PRELOAD " .. query .. " 2>/dev/null")
  for line in p:lines() do
    local pid, args = line:match("^%s*(%d+)%s+(.*)$")
    if pid and args ~= query then out[#out + 1] = tonumber(pid) end
  end
  p:close()
  return out
end

-- ps's output for pid (`-o FIELDS=`), "" once the process is gone. ps is
-- run without LD_PRELOAD: it hangs under a preloaded sanitizer runtime.
function H.ps(fields, pid)
  local p = io.popen("env -u LD_PRELOAD ps -o " .. fields .. " -p " .. pid .. " 2>/dev/null")
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end

-- Asserts that no child process is left (call in after_each).
function H.assert_no_children()
  local left = H.wait_until(function() return #H.child_pids() == 0 end, 5)
  assert(left, "children left behind: " .. table.concat(H.child_pids(), " "))
end

-- Whether process pid sleeps in the kernel on a futex: how a test knows
-- that a child has reached a corral wait (a full queue, a held lock).
function H.in_futex_wait(pid)
  local f = io.open("/proc/" .. pid .. "/wchan")
  if not f then return false end
  local w = f:read("a") or ""
  f:close()
  return w:find("futex", 1, true) ~= nil
end

-- This process's open descriptors: { [fd] = what it is }, without the
-- pipe they are read through.
function H.open_fds()
  local fds, self = {}, nil
  local p = io.popen("echo \"self $(readlink /proc/$$/fd/1)\"; cd /proc/" .. mp.getpid()
    .. "/fd && for f in *; do echo \"$f $(readlink $f)\"; done")
  for line in p:lines() do
    local fd, what = line:match("^(%S+) (.*)$")
    if fd == "self" then self = what elseif fd then fds[tonumber(fd)] = what end
  end
  p:close()
  for fd, what in pairs(fds) do
    if what == self then fds[fd] = nil end
  end
  return fds
end

-- How many descriptors this process has open.
function H.count_fds()
  local n = 0
  for _ in pairs(H.open_fds()) do n = n + 1 end
  return n
end

-- The descriptors of `after` whose numbers `before` did not have, as
-- "fd what" lines.
function H.new_fds(before, after)
  local out = {}
  for fd, what in pairs(after) do
    if before[fd] == nil then out[#out + 1] = fd .. " " .. what end
  end
  table.sort(out)
  return out
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
H.shell_quote = shell_quote

-- Runs the corral executable with `args` (an array); returns stdout,
-- stderr and the exit status. `input` is written to its stdin.
function H.run(args, input, env)
  local errf = os.tmpname()
  local inf
  local cmd = ""
  for k, v in pairs(env or {}) do cmd = cmd .. k .. "=" .. shell_quote(v) .. " " end
  cmd = cmd .. shell_quote(H.exe)
  for _, a in ipairs(args) do cmd = cmd .. " " .. shell_quote(a) end
  if input then
    inf = os.tmpname()
    local f = io.open(inf, "wb"); f:write(input); f:close()
    cmd = cmd .. " < " .. shell_quote(inf)
  else
    cmd = cmd .. " < /dev/null"
  end
  cmd = cmd .. " 2> " .. shell_quote(errf)
  local p = io.popen(cmd, "r")
  local out = p:read("a")
  local _, _, code = p:close()
  local f = io.open(errf, "rb"); local err = f:read("a"); f:close()
  os.remove(errf)
  if inf then os.remove(inf) end
  return out, err, code
end

-- Runs the script at `path` under stock lua5.4 (the module from H.build),
-- reads its first line ("tag PID"), then `lines` more, then sends SIGINT to
-- PID; returns all it printed after those (stdout and stderr). A timeout
-- kills it after 30 s: a script that ignores the SIGINT fails, never hangs.
function H.interrupted(path, lines)
  local cmd = ("CORRAL_START_METHOD=%s LUA_CPATH=%s timeout -s KILL 30 lua5.4 %s 2>&1 | "
    .. "{ read -r tag pid; for i in $(seq 1 %d); do read -r line; done; kill -INT $pid; cat; }"):format(
    H.method, shell_quote(H.build .. "/?.so"), shell_quote(path), lines or 0)
  local f = io.popen("bash -c " .. shell_quote(cmd)) -- a sanitizer runtime stays preloaded for lua5.4
  local out = f:read("a")
  f:close()
  return out
end

-- Writes a temporary Lua script and returns its path (removed by cleanup()).
local temps = {}
function H.script(src)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  temps[#temps + 1] = path
  return path
end

-- Makes a temporary directory holding the module `name`.lua with source
-- `src` and returns its path (both removed by cleanup()).
function H.module(name, src)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. shell_quote(dir)))
  local path = dir .. "/" .. name .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  temps[#temps + 1] = path
  temps[#temps + 1] = dir
  return dir
end

-- Removes the files H.script and H.module made. An after_each calls it
-- before its checks (H.assert_no_children), which may fail.
function H.cleanup()
  for _, p in ipairs(temps) do os.remove(p); os.remove((p:gsub("%.lua$", ""))) end
  temps = {}
end

return H
