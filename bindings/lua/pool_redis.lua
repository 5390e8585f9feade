-- corral.pool_redis: a Pool whose tasks go through a Redis stream, so that
-- workers on other machines (`corral worker redis://host:port/name`) take
-- them as well as the pool's own n local workers.
--
-- Keys, for the pool name P (the hash tag keeps them on one cluster slot):
--   corral:{P}:tasks      the task stream, read by the consumer group "w"
--   corral:{P}:res:<id>   each caller's result stream (made when the caller starts)
--   corral:{P}:dead       the dead-letter stream: tasks past max_deliveries
--   corral:{P}:cfg        visibility and max_deliveries, set by the callers
--   corral:{P}:runs       how many task executions ended (a counter)
--   corral:{P}:taken      how many times a worker took a task (a counter)
--
-- A task entry: t (the task id, unique to its caller), r (the caller's
-- result stream), m (the encoded {f=, mode=, items=, timeout=}), s (its
-- HMAC-SHA256 under the authkey over t, r and m; "" without a key). A
-- worker takes an entry with XREADGROUP, or first one that another
-- consumer has held idle past the visibility timeout (XAUTOCLAIM: that
-- consumer died or was stopped). While it runs the task, a heartbeat thread
-- keeps the entry's idle time low, so a live worker keeps its claim however
-- long the task runs. It answers on the caller's result stream and
-- acknowledges and deletes the entry in one script. An entry delivered more
-- than max_deliveries times is not run again: it goes to the dead-letter
-- stream and its caller gets a WorkerLost error.
--
-- The caller keeps the tasks it sent by id; the first answer for a task is
-- its result, later ones (from a worker taken for dead that finished after
-- all) are dropped and counted in pool.duplicates.
--
-- Code does not travel unsigned: with a key, every task and every answer
-- is signed, and a worker refuses (never runs) a task whose signature is
-- missing or wrong, answering AuthError. Without a key a task's function
-- is a name, "module.func", that the worker resolves with require, and
-- everything is decoded with functions disabled.
local _, core = ...
local mp = require "corral"
local jobs = require "corral.pool_jobs"
local worker = require "corral.pool_worker"

local type, pairs, ipairs, error, pcall, xpcall, tostring, setmetatable, select =
  type, pairs, ipairs, error, pcall, xpcall, tostring, setmetatable, select
local tpack, tunpack, concat = table.pack, table.unpack, table.concat
local floor, huge, min, max, ceil = math.floor, math.huge, math.min, math.max, math.ceil
local now, raise, newerror, iserror = core.time, core._raise, core._newerror, core.iserror
local encode, decode = core.encode, core.decode
local hmac, hmac_check = core._hmac, core._hmac_check

local SLICE = 0.2           -- longest wait on the server: stop flags and dead workers are seen within it
local APPLY, MAP, STAR = 0, 1, 2
local SUBMIT_BATCH = 64     -- tasks sent in one script call
local NOTHING = {}

local M = {}

local function keys(name)
  local base = "corral:{" .. name .. "}:"
  return { tasks = base .. "tasks", dead = base .. "dead", cfg = base .. "cfg", runs = base .. "runs",
           taken = base .. "taken", res = base .. "res:" }
end

local seq = 0
local function unique(prefix)
  seq = seq + 1
  local host = (io.open("/proc/sys/kernel/hostname") or NOTHING)
  local h = host.read and host:read("l") or "host"
  if host.close then host:close() end
  return ("%s%s-%d-%d-%d"):format(prefix, h, core.getpid(), floor(now() * 1e6) % 1000000, seq)
end

local function the_key(k)
  if k == nil then k = os.getenv("CORRAL_AUTHKEY") end
  if k == false or k == "" then return nil end
  return k
end

local function group(conn, stream, name, start)
  local ok, err = pcall(conn.call, conn, "XGROUP", "CREATE", stream, name, start, "MKSTREAM")
  if not ok and not tostring(err):find("BUSYGROUP", 1, true) then error(err, 0) end
end

local function fields_of(arr)
  local f = {}
  for i = 1, #arr, 2 do f[arr[i]] = arr[i + 1] end
  return f
end

-- ---- the worker ---------------------------------------------------------------------

-- Takes the next entry: {id, fields, deliveries} or false, and counts it
-- in KEYS[2]. First one still pending for this consumer (between two
-- tasks it holds none, unless a server restart lost the answer it gave:
-- it is run again now, not after the visibility timeout); then an entry
-- another consumer holds idle past the visibility timeout; then a new one.
local TAKE = [[
local r = redis.call('XREADGROUP', 'GROUP', 'w', ARGV[1], 'COUNT', 1, 'STREAMS', KEYS[1], '0')
local e = r and r[1][2][1]
if e and not e[2] then -- its entry was deleted: nothing to run
  redis.call('XACK', KEYS[1], 'w', e[1])
  e = nil
end
if not e then
  r = redis.call('XAUTOCLAIM', KEYS[1], 'w', ARGV[1], ARGV[2], '0-0', 'COUNT', 1)
  e = r[2][1]
end
local n = 1
if e then
  local p = redis.call('XPENDING', KEYS[1], 'w', e[1], e[1], 1)
  if p[1] then n = p[1][4] end
else
  r = redis.call('XREADGROUP', 'GROUP', 'w', ARGV[1], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
  if r then e = r[1][2][1] end
end
if not e then return false end
redis.call('INCR', KEYS[2])
return {e[1], e[2], n}
]]

-- Answers a task and lets its entry go, in one step. KEYS: tasks, res,
-- runs; ARGV: entry id, task id, status, body, signature. The answer is
-- dropped when its caller is gone (its result stream deleted).
local FINISH = [[
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('XADD', KEYS[2], '*', 't', ARGV[2], 'st', ARGV[3], 'b', ARGV[4], 's', ARGV[5])
end
redis.call('XACK', KEYS[1], 'w', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
return redis.call('INCR', KEYS[3])
]]

-- As FINISH, for a task that is not run: it goes to the dead-letter
-- stream (KEYS[3]) with why (ARGV[6]) and its body (ARGV[7]).
local BURY = [[
redis.call('XADD', KEYS[3], '*', 't', ARGV[2], 'r', KEYS[2], 'm', ARGV[7], 'err', ARGV[6])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('XADD', KEYS[2], '*', 't', ARGV[2], 'st', ARGV[3], 'b', ARGV[4], 's', ARGV[5])
end
redis.call('XACK', KEYS[1], 'w', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
]]

-- A task's error as the caller gets it: the time limit kept by run_task
-- stays a Timeout, anything else is a RemoteError.
local function remote_error(e)
  local err = e.err
  if iserror(err) and err.kind == "Timeout" and err.task_timeout then
    return newerror("Timeout", err.message, { pid = core.getpid() })
  end
  return worker.remote_error(e)
end

-- Resolves "module.func" (the longest module name that loads).
local function named(f)
  local mod, fn = f:match("^(.+)%.([^.]+)$")
  if not mod then return nil, "a task name is 'module.func', got '" .. f .. "'" end
  local ok, m = pcall(require, mod)
  if not ok then return nil, "cannot load module '" .. mod .. "': " .. tostring(m) end
  local v = type(m) == "table" and m[fn]
  if v == nil then return nil, "module '" .. mod .. "' has no function '" .. fn .. "'" end
  return v
end

-- Runs f over the task's items; a time limit is kept by a count hook (Lua
-- code only: a task blocked in C runs on past it).
local function run_task(f, mode, items, timeout)
  if timeout then
    local deadline = now() + timeout
    debug.sethook(function()
      if now() > deadline then
        debug.sethook()
        error(newerror("Timeout", ("the task ran past its time limit of %g s"):format(timeout),
          { task_timeout = true }), 0)
      end
    end, "", 1000)
  end
  local ok, v, partial, n = worker.run_items(f, mode, items, 1, #items)
  if timeout then debug.sethook() end
  if ok then return "ok", v end
  if mode == APPLY then return "err", { err = remote_error(v), n = 0 } end
  return "err", { err = remote_error(v), n = n, r = partial }
end

local function log(msg)
  io.stderr:write("corral worker ", core.getpid(), ": ", msg, "\n")
  io.stderr:flush()
end

-- The body of a worker process: serves pool `name` at url until stop (an
-- Event, or nil for ever) is set. key: the authkey, or nil.
function M.worker_main(url, name, key, stop)
  core._ignore_sigint()
  local K = keys(name)
  local conn = core._redis(url)
  group(conn, K.tasks, "w", "0")
  local consumer = unique("w-")
  local vis, maxdel, cfg_at = 30, 3, -huge
  local function config()
    local c = fields_of(conn:call("HGETALL", K.cfg) or NOTHING)
    vis = tonumber(c.vis) or vis
    maxdel = tonumber(c.maxdel) or maxdel
    cfg_at = now()
  end
  config()
  local beat = conn:beat(K.tasks, "w", consumer, max(vis / 3, 0.01))
  local function answer(script, eid, f, st, body, ...)
    local b = encode(body, "result")
    local s = key and hmac(key, f.t .. "\0" .. st .. "\0" .. b) or ""
    conn:eval(script, 3, K.tasks, f.r, script == FINISH and K.runs or K.dead, eid, f.t, st, b, s, ...)
  end
  local function refuse(eid, f, why)
    log("refused task " .. tostring(f.t) .. ": " .. why)
    answer(FINISH, eid, f, "err", { err = newerror("AuthError", why, { pid = core.getpid() }), n = 0 })
  end
  local function handle(eid, f, n)
    if not (f.t and f.r and f.m) then -- not a task: let it go
      conn:call("XACK", K.tasks, "w", eid)
      conn:call("XDEL", K.tasks, eid)
      return
    end
    if n > maxdel then
      local why = ("task %s was delivered %d times and its worker was lost each time (max_deliveries = %d)")
        :format(f.t, n - 1, maxdel)
      log(why)
      answer(BURY, eid, f, "err", { err = newerror("WorkerLost", why, { pid = core.getpid() }), n = 0 }, why, f.m)
      return
    end
    local signed = key ~= nil and f.s ~= nil and f.s ~= "" and hmac_check(key, f.t .. "\0" .. f.r .. "\0" .. f.m, f.s)
    if key and not signed then
      return refuse(eid, f, (f.s == nil or f.s == "") and "the task is not signed (this worker has an authkey)"
        or "the task's signature is wrong (another authkey?)")
    end
    local ok, body = pcall(decode, f.m, { trusted = signed })
    if not ok then
      if not signed and tostring(body):find("functions are refused", 1, true) then
        return refuse(eid, f, "the task carries code without a signature (no authkey): refused, never run")
      end
      return answer(FINISH, eid, f, "err", { err = newerror("DecodeError", "the task could not be decoded in the worker: "
        .. tostring(iserror(body) and body.message or body), { pid = core.getpid() }), n = 0 })
    end
    local fn, why = body.f, nil
    if type(fn) == "string" then fn, why = named(fn) end
    if type(fn) ~= "function" and not (fn and getmetatable(fn) and getmetatable(fn).__call) then
      return answer(FINISH, eid, f, "err", { err = newerror("ValueError", why or "the task has no function",
        { pid = core.getpid() }), n = 0 })
    end
    beat:hold(eid)
    local st, res = run_task(fn, body.mode, body.items, body.timeout)
    local okb, enc = pcall(encode, res, "result")
    if not okb then
      st, res = "err", { err = newerror(enc.kind or "EncodeError", enc.message or tostring(enc), { pid = core.getpid() }), n = 0 }
    end
    beat:hold(nil)
    answer(FINISH, eid, f, st, res)
  end
  local ppid = core.getppid()
  local block = { "XREADGROUP", "GROUP", "w", consumer, "COUNT", "1", "BLOCK", tostring(floor(SLICE * 1000)),
                  "STREAMS", K.tasks, ">" }
  -- until told to stop, or until the process that started it is gone
  while not (stop and stop:is_set()) and core.getppid() == ppid do
    if now() - cfg_at > 1 then config() end
    local e = conn:eval(TAKE, 2, K.tasks, K.taken, consumer, tostring(floor(vis * 1000)))
    if not e then
      local r = conn:block(SLICE, tunpack(block))
      local x = r and r[1] and r[1][2][1]
      if x then
      e = { x[1], x[2], 1 }
      conn:call("INCR", K.taken)
    end
    end
    if e then handle(e[1], fields_of(e[2]), e[3]) end
  end
  beat:stop()
  conn:close()
end

-- `corral worker redis://host:port/name [--workers N]`: runs N worker
-- processes for the pool and starts a new one when one dies, until SIGINT
-- or SIGTERM. The key comes from CORRAL_AUTHKEY.
function M.serve(argv)
  if not core._redis then
    raise("ValueError", "corral worker: this corral was built without the Redis backend "
      .. "(it needs libhiredis-dev and libssl-dev)", 2)
  end
  local url, n = nil, mp.cpu_count()
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--workers" or a == "-n" then
      n = math.tointeger(tonumber(argv[i + 1]))
      if not n or n < 1 then raise("ValueError", "--workers wants a positive integer", 2) end
      i = i + 2
    elseif a:match("^%-%-workers=") then
      n = math.tointeger(tonumber(a:match("=(.*)")))
      if not n or n < 1 then raise("ValueError", "--workers wants a positive integer", 2) end
      i = i + 1
    elseif not url and a:match("^redis://") then
      url, i = a, i + 1
    else
      raise("ValueError", "usage: corral worker redis://host:port/name [--workers N]", 2)
    end
  end
  if not url then raise("ValueError", "usage: corral worker redis://host:port/name [--workers N]", 2) end
  local probe = core._redis(url)
  local name = probe:path()
  probe:close()
  if name == "" then raise("ValueError", "corral worker: the url names no pool (redis://host:port/NAME)", 2) end
  local key = the_key(nil)
  local stop = mp.Event()
  local procs = {}
  local function start(slot)
    local p = mp.Process{ target = M.worker_main, args = { url, name, key, stop }, daemon = true,
                          name = ("RedisWorker-%d"):format(slot) }
    p:start()
    procs[slot] = p
  end
  for s = 1, n do start(s) end
  io.stderr:write(("corral worker: %d workers for '%s' at %s\n"):format(n, name, url))
  io.stderr:flush()
  local ok, err = pcall(function()
    while true do
      for s = 1, n do
        if not procs[s]:is_alive() then
          procs[s]:join(0)
          start(s)
        end
      end
      mp.sleep(0.05)
    end
  end)
  stop:set()
  for s = 1, n do procs[s]:join(2 * SLICE + 1) end
  for s = 1, n do if procs[s]:is_alive() then procs[s]:kill() procs[s]:join() end end
  if not iserror(err, "Interrupted") then error(err, 0) end
  return ok
end

-- ---- the caller ------------------------------------------------------------------------

local Pool = {}
Pool.__index = Pool
Pool.__name = "corral.Pool"

local OPTS = { broker = true, name = true, authkey = true, visibility = true, max_deliveries = true,
               context = true, _unsigned = true }

local shared = require("corral.pool")._shared
local check_opts, check_chunksize, callable, check_count = shared.opts, shared.chunksize, shared.callable,
  shared.count

-- Pool(n, {broker = url, name =, authkey =, visibility = 30, max_deliveries = 3})
function M.new(n, opts)
  if not core._redis then
    raise("ValueError", "Pool{broker=...}: this corral was built without the Redis backend "
      .. "(it needs libhiredis-dev and libssl-dev)", 3)
  end
  if n == nil then n = core.cpu_count() end
  if n ~= 0 then check_count(n, "Pool size", 3) end -- 0: a caller whose workers are elsewhere
  for k in pairs(opts) do
    if not OPTS[k] then raise("ValueError", "Pool: unknown option '" .. tostring(k) .. "' for a Redis pool", 3) end
  end
  local url = opts.broker
  if type(url) ~= "string" then raise("ValueError", "Pool: broker must be a redis:// url", 3) end
  local vis = opts.visibility or 30
  if type(vis) ~= "number" or not (vis > 0) then raise("ValueError", "Pool: visibility must be a positive number", 3) end
  local maxdel = opts.max_deliveries or 3
  check_count(maxdel, "max_deliveries", 3)
  local conn = core._redis(url)
  local name = opts.name or conn:path()
  if type(name) ~= "string" or name == "" then
    raise("ValueError", "Pool: a Redis pool needs a name (the name option or the url's path)", 3)
  end
  local K = keys(name)
  local self = setmetatable({
    _n = n, _url = url, _name = name, _K = K, _conn = conn, _key = the_key(opts.authkey),
    _unsigned = opts._unsigned, _ctx = opts.context or mp, _id = unique("c-"),
    _tasks = {}, _ntasks = 0, _next = 0, _outbox = {}, _sources = {}, _timed = 0,
    _workers = {}, _state = "running", _pid = core.getpid(), _last = "0-0",
    duplicates = 0,
  }, Pool)
  self._res = K.res .. self._id
  conn:call("HSET", K.cfg, "vis", tostring(vis), "maxdel", tostring(maxdel))
  group(conn, K.tasks, "w", "0")
  group(conn, self._res, "c", "$") -- the result stream exists while the caller does
  if n > 0 then self._stop = mp.Event() end
  for slot = 1, n do self:_start_worker(slot) end
  return self
end

function Pool:_start_worker(slot)
  local p = self._ctx.Process{ target = M.worker_main, args = { self._url, self._name, self._key, self._stop },
                               daemon = true, name = ("PoolWorker-%d"):format(slot) }
  p:start()
  self._workers[slot] = p
end

-- A local worker that died is replaced; its task comes back by reclaim.
function Pool:_check_workers()
  if self._state == "terminated" then return end
  for slot = 1, self._n do
    local p = self._workers[slot]
    if p and not p:is_alive() then
      p:join(0)
      p:close()
      self:_start_worker(slot)
    end
  end
end

local function check_running(self, level)
  if self._state ~= "running" then
    raise("StateError", "the pool is " .. (self._state == "closed" and "closed" or "terminated")
      .. ": no new tasks", level + 1)
  end
end

-- The function as it travels: a name, or (signed only) the function itself.
function Pool:_fn(f, level)
  if type(f) == "string" then
    if not f:match("^.+%.[^.]+$") then raise("ValueError", "a task name is 'module.func', got '" .. f .. "'", level + 1) end
    return f
  end
  if not callable(f) then raise("ValueError", "f must be a function or a 'module.func' name, got " .. type(f), level + 1) end
  if not self._key and not self._unsigned then
    raise("ValueError", "a Redis pool without an authkey runs only named tasks ('module.func'): give it an authkey "
      .. "(or set CORRAL_AUTHKEY) to send a function", level + 1)
  end
  return f
end

-- Queues one task: items (an array) of job, from position index.
function Pool:_task(job, f, mode, items, index, level)
  self._next = self._next + 1
  local tid = self._id .. ":" .. self._next
  local ok, m = pcall(encode, { f = f, mode = mode, items = items, timeout = job.timeout }, "args")
  if not ok then error(m, level + 1) end
  local s = ""
  if self._key and not self._unsigned then s = hmac(self._key, tid .. "\0" .. self._res .. "\0" .. m) end
  local out = self._outbox
  out[#out + 1] = tid
  out[#out + 1] = m
  out[#out + 1] = s
  self._tasks[tid] = { job = job, index = index, count = mode == APPLY and 1 or #items }
  self._ntasks = self._ntasks + 1
  job.tasks_left = job.tasks_left + 1
  if #out >= 3 * SUBMIT_BATCH then self:_flush() end
end

local SUBMIT = [[
for i = 2, #ARGV, 3 do
  redis.call('XADD', KEYS[1], '*', 't', ARGV[i], 'r', ARGV[1], 'm', ARGV[i + 1], 's', ARGV[i + 2])
end
return 1
]]

-- Sends the tasks queued so far, in one script call.
function Pool:_flush()
  local out = self._outbox
  if #out == 0 then return end
  self._outbox = {}
  self._conn:eval(SUBMIT, 1, self._K.tasks, self._res, tunpack(out))
end

Pool._job_done, Pool._task_counted = shared.job_done, shared.task_counted

-- One answer: the first for its task is its result; later ones are dropped.
function Pool:_on_answer(f)
  local task = f.t and self._tasks[f.t]
  if not task then
    self.duplicates = self.duplicates + 1
    return
  end
  self._tasks[f.t] = nil
  self._ntasks = self._ntasks - 1
  local job = task.job
  local b = f.b or ""
  local signed = self._key ~= nil and f.s ~= nil and f.s ~= ""
    and hmac_check(self._key, f.t .. "\0" .. f.st .. "\0" .. b, f.s)
  local ok, v = pcall(decode, b, { trusted = signed })
  if not ok then
    job:on_error(task.index, v, 0, NOTHING)
  elseif f.st == "ok" then
    local okt, err = pcall(job.take, job, task.index, task.count, core._pack(v), 1)
    if not okt then job:on_error(task.index, err, 0, NOTHING) end
  else
    job:on_error(task.index, v.err, v.n or 0, v.r or NOTHING)
  end
  self:_task_counted(job, task.count)
end

-- Reads answers for up to t seconds (0: those that already arrived).
function Pool:_collect(t)
  local r
  if t > 0 then
    r = self._conn:block(t, "XREAD", "COUNT", "1024", "BLOCK", tostring(max(1, floor(t * 1000))),
                         "STREAMS", self._res, self._last)
  else
    r = self._conn:call("XREAD", "COUNT", "1024", "STREAMS", self._res, self._last)
  end
  if not r or not r[1] then return end
  local entries, ids = r[1][2], {}
  for i, e in ipairs(entries) do
    self._last = e[1]
    ids[i] = e[1]
    self:_on_answer(fields_of(e[2]))
  end
  if #ids > 0 then self._conn:call("XDEL", self._res, tunpack(ids)) end
end

-- Pulls items of lazy sources (imap over an iterator) while few tasks wait.
function Pool:_pump()
  local srcs = self._sources
  for i = #srcs, 1, -1 do
    local src = srcs[i]
    while src.job.source_open and self._ntasks < src.window do src:pull(self) end
    if not src.job.source_open then table.remove(srcs, i) end
  end
  self:_flush()
end

-- An AsyncResult's ready(): takes in what already arrived, without waiting.
function Pool:_serve()
  if self._state == "terminated" then return end
  self:_pump()
  self:_collect(0)
  self:_check_workers()
end

function Pool:_wait_until(cond, timeout, level)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    raise("ValueError", "timeout must be a number >= 0 or nil, got " .. tostring(timeout), (level or 1) + 1)
  end
  local deadline = timeout and now() + timeout or huge
  while true do
    self:_pump()
    if cond() then return true end
    if self._state == "terminated" then return cond() end
    local left = deadline - now()
    if left <= 0 then return false end
    self:_collect(min(left, SLICE))
    self:_check_workers()
  end
end

local APPLY_OPTS = { callback = true, error_callback = true, timeout = true }
local MAP_OPTS = { callback = true, error_callback = true, timeout = true, progress = true, chunksize = true }

function Pool:apply_async(f, args, opts)
  check_running(self, 2)
  f = self:_fn(f, 2)
  if args ~= nil and type(args) ~= "table" then raise("ValueError", "apply_async: args must be a table", 2) end
  opts = check_opts(opts, APPLY_OPTS, 2)
  local job = jobs.apply_job(self, opts)
  self:_task(job, f, APPLY, { args or {} }, 1, 2)
  self:_flush()
  return job.result
end

function Pool:apply(f, ...)
  check_running(self, 2)
  return self:apply_async(f, tpack(...)):get()
end

local function chunks(self, job, f, mode, list, first, n, c, level)
  for i = first, first + n - 1, c do
    local last = min(i + c - 1, first + n - 1)
    self:_task(job, f, mode, table.move(list, i, last, 1, {}), i - first + (job.next_pos or 1), level + 1)
  end
end

local function map_async(self, mode, f, list, chunksize, opts, level)
  check_running(self, level + 1)
  f = self:_fn(f, level + 1)
  if type(list) ~= "table" then raise("ValueError", "expected an array table of items, got " .. type(list), level + 1) end
  if type(chunksize) == "table" and opts == nil then opts, chunksize = chunksize, nil end
  opts = check_opts(opts, MAP_OPTS, level + 1)
  chunksize = chunksize or opts.chunksize
  check_chunksize(chunksize, level + 1)
  local n = #list
  chunksize = chunksize or max(1, ceil(n / (max(self._n, 1) * 4)))
  local job = jobs.map_job(self, opts, n)
  if n == 0 then
    self:_job_done(job)
  else
    chunks(self, job, f, mode, list, 1, n, chunksize, level + 1)
    self:_flush()
  end
  return job.result
end

function Pool:map(f, list, chunksize, opts) return map_async(self, MAP, f, list, chunksize, opts, 2):get() end
function Pool:map_async(f, list, chunksize, opts) return map_async(self, MAP, f, list, chunksize, opts, 2) end
function Pool:starmap(f, list, chunksize, opts) return map_async(self, STAR, f, list, chunksize, opts, 2):get() end
function Pool:starmap_async(f, list, chunksize, opts) return map_async(self, STAR, f, list, chunksize, opts, 2) end

-- A lazy source for imap: pulls chunks of items while few tasks wait.
local Source = {}
Source.__index = Source

function Source:pull(pool)
  local job, c, chunk, n = self.job, self.chunksize, {}, 0
  while n < c do
    local v
    if self.list then
      if self.i > self.len then break end
      v = self.list[self.i]
      self.i = self.i + 1
    else
      local ok, x = pcall(self.iter)
      if not ok then
        job.source_open = false
        job:deliver(job.next_pos + n, false, x)
        job.total = job.next_pos + n
        break
      end
      if x == nil then break end
      v = x
    end
    n = n + 1
    chunk[n] = v
  end
  if n > 0 then
    pool:_task(job, self.f, job.mode, chunk, job.next_pos, 2)
    job.next_pos = job.next_pos + n
  end
  if n < c then
    job.source_open = false
    job.total = job.total or (job.next_pos - 1)
    if job.tasks_left == 0 then pool:_job_done(job) end
  end
end

local function imap(self, mode, f, iterable, chunksize, opts, ordered, level)
  check_running(self, level + 1)
  f = self:_fn(f, level + 1)
  local list, iter
  list, iter, chunksize, opts = shared.imap_args(iterable, chunksize, opts, level + 1)
  local job = jobs.imap_job(self, opts, mode, ordered, list and #list or nil)
  local src = setmetatable({ job = job, f = f, list = list, len = list and #list, i = 1, iter = iter,
                             chunksize = chunksize, window = max(self._n, 2) * 64 * chunksize }, Source)
  self._sources[#self._sources + 1] = src
  return jobs.imap_iterator(self, job)
end

function Pool:imap(f, iterable, chunksize, opts) return imap(self, MAP, f, iterable, chunksize, opts, true, 2) end
function Pool:imap_unordered(f, iterable, chunksize, opts)
  return imap(self, MAP, f, iterable, chunksize, opts, false, 2)
end

-- How many task executions ended on this pool name, on every machine.
function Pool:executions()
  return tonumber(self._conn:call("GET", self._K.runs)) or 0
end

-- Counters of the pool name, on every machine: taken (a worker took a
-- task, again after a reclaim), executions (a task's run ended),
-- duplicates (answers this caller dropped), dead (tasks given up).
function Pool:stats()
  local c = self._conn
  return { taken = tonumber(c:call("GET", self._K.taken)) or 0, executions = self:executions(),
           duplicates = self.duplicates, dead = tonumber(c:call("XLEN", self._K.dead)) or 0 }
end

-- The dead-letter stream: {task=, error=, body=} for each task given up.
function Pool:dead_letters()
  local out = {}
  for _, e in ipairs(self._conn:call("XRANGE", self._K.dead, "-", "+")) do
    local f = fields_of(e[2])
    out[#out + 1] = { id = e[1], task = f.t, error = f.err, body = f.m }
  end
  return out
end

Pool.close = shared.close

function Pool:join(timeout)
  if self._state == "running" then raise("StateError", "close or terminate the pool before join", 2) end
  local ok = self:_wait_until(function() return self._ntasks == 0 and #self._sources == 0 end, timeout, 2)
  if not ok then return false end
  if self._stop then self._stop:set() end
  local deadline = timeout and now() + timeout
  for slot = 1, self._n do
    local p = self._workers[slot]
    if p then
      if not p:join(deadline and max(0, deadline - now())) then return false end
      self._workers[slot] = nil
    end
  end
  return true
end

function Pool:terminate()
  if self._state == "terminated" then return end
  if self._pid ~= core.getpid() then return end
  self._state = "terminated"
  for slot = 1, self._n do
    local p = self._workers[slot]
    if p then p:kill() end
  end
  for slot = 1, self._n do
    local p = self._workers[slot]
    if p then p:join() self._workers[slot] = nil end
  end
  local err = newerror("Closed", "the pool was terminated before the task ended", {})
  local seen = {}
  for tid, task in pairs(self._tasks) do
    local job = task.job
    if not job.done and not seen[job] then
      seen[job] = true
      job:on_error(task.index, err, 0, NOTHING)
      job.tasks_left, job.source_open = 0, false
      job.total = job.total or task.index
      self:_job_done(job)
    end
    self._tasks[tid] = nil
  end
  self._ntasks, self._sources = 0, {}
  pcall(self._conn.call, self._conn, "DEL", self._res)
end

Pool.__close = Pool.terminate
Pool.__gc = shared.gc

function Pool.__tostring(self)
  return ("Pool (%d local workers, %s '%s', %s)"):format(self._n, self._conn:url(), self._name, self._state)
end

return M
