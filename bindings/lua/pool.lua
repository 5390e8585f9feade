-- corral.pool: worker pools that never hang, with closures as tasks.
--
-- Design
--   * Each worker is a daemon Process with an inbox Queue of its own; all
--     workers answer on one shared outbox Queue. The parent dispatches a task
--     to a chosen worker, so it always knows which tasks each worker holds:
--     when a worker dies, the tasks still in its inbox go to another worker
--     and the ones it had taken fail with WorkerLost (or Timeout, when the
--     parent killed it for running past its time limit). Nothing can hang.
--   * A task travels as one string: a small header (string.pack) and a
--     packed body (the codec). A function is packed into the body only the
--     first time it goes to a given worker; the worker caches it by id.
--     A body that cannot be decoded in the worker, and a result that cannot
--     be encoded there, fail that task alone.
--   * The parent feeds and collects while the caller waits in a pool call
--     (get, wait, map, imap, join...): dispatching is bounded (a few tasks
--     per worker in flight), so an imap over an endless iterator keeps the
--     parent's memory bounded.
--   * A worker's death interrupts the parent's wait (SIGCHLD); the parent
--     also never waits more than a second at a time, so a death is noticed
--     within about a second whatever happens.
--   * Workers write the id and start time of a task with a time limit into
--     a shared RawArray, which is how the parent enforces those limits.
local _, core = ...
local mp = require "corral"

local type, pairs, ipairs, select, error, pcall, xpcall, tostring, setmetatable, rawget, next =
  type, pairs, ipairs, select, error, pcall, xpcall, tostring, setmetatable, rawget, next
local spack, sunpack = string.pack, string.unpack
local tpack, tunpack, tinsert, tremove, concat = table.pack, table.unpack, table.insert, table.remove, table.concat
local floor, huge, min, max, ceil = math.floor, math.huge, math.min, math.max, math.ceil
local now, raise, newerror, iserror = core.time, core._raise, core._newerror, core.iserror
local pack, unpack, check_encodable = core._pack, core._unpack, core._check
local getmetatable = getmetatable

local PREFETCH = 2          -- tasks queued ahead in each worker's inbox
local SLICE = 1.0           -- longest single wait: a death is seen within it
local HDR_TASK = "<i8i8B"   -- task id, function id, flags (1: body carries the function)
local HDR_RESULT = "<i8i4B" -- task id, worker slot, status
local ST_OK, ST_ERR = 1, 2

-- ---- the worker side ----------------------------------------------------------

local function remote_error(err, tb)
  local fields = { traceback = tb, pid = core.getpid() }
  if iserror(err) then fields.remote_kind = err.kind end
  return newerror("RemoteError", iserror(err) and tostring(err) or tostring(err), fields)
end

local function traceback(err)
  return { err = err, tb = debug.traceback(iserror(err) and tostring(err) or tostring(err), 2) }
end

local MODE_CODE = { apply = 0, map = 1, star = 2 }
local MODE_NAME = { [0] = "apply", "map", "star" }

-- Runs one task body; returns status and a packed reply body. The body is
-- the task's arguments, or {f, arguments} when it brings its function.
-- A successful reply is the results (apply: a table.pack of them).
local function run_task(msg, pos, fns, fid, has_fn, mode)
  local ok, t = pcall(unpack, msg, pos)
  if not ok then
    return ST_ERR, pack({ err = newerror("DecodeError", "the task could not be decoded in the worker: "
      .. (iserror(t) and t.message or tostring(t)), { pid = core.getpid() }) })
  end
  local args = t
  if has_fn then
    fns[fid] = t[1]
    args = t[2]
  end
  local f = fns[fid]
  local out
  if mode == "apply" then
    local r = tpack(xpcall(f, traceback, tunpack(args, 1, args.n or #args)))
    if not r[1] then return ST_ERR, pack({ err = remote_error(r[2].err, r[2].tb) }) end
    out = tpack(select(2, tunpack(r, 1, r.n)))
  else -- "map" / "star": a chunk of items; the first error ends the chunk
    local res, n, i = {}, #args, 0
    local ok2, e = xpcall(function()
      if mode == "star" then
        for k = 1, n do
          i = k
          local item = args[k]
          res[k] = f(tunpack(item, 1, item.n or #item))
        end
      else
        for k = 1, n do
          i = k
          res[k] = f(args[k])
        end
      end
    end, traceback)
    if not ok2 then
      for k = i, n do res[k] = nil end
      local okp, b = pcall(pack, { r = res, n = i - 1, err = remote_error(e.err, e.tb) })
      if okp then return ST_ERR, b end
      return ST_ERR, pack({ r = {}, n = 0, err = remote_error(e.err, e.tb) })
    end
    out = res
  end
  local okp, b = pcall(pack, out, "result")
  if okp then return ST_OK, b end
  local e = b
  if iserror(e) then e = newerror(e.kind, e.message, { pid = core.getpid() }) end
  return ST_ERR, pack({ r = {}, n = 0, err = e })
end

-- The body of a worker process.
local function worker_main(inbox, outbox, slot, status, init, initargs, maxtasks)
  core._ignore_sigint()
  if init then init(tunpack(initargs, 1, initargs.n or #initargs)) end
  local fns, done = {}, 0
  while true do
    local msg = inbox:get()
    if type(msg) ~= "string" then break end -- closed, or told to stop
    local id, fid, flags, pos = sunpack(HDR_TASK, msg)
    local timed = flags & 8 ~= 0 -- the parent watches its time limit
    if timed then
      status[2 * slot - 1] = id
      status[2 * slot] = now()
    end
    local st, body = run_task(msg, pos, fns, fid, flags & 1 == 1, MODE_NAME[(flags >> 1) & 3])
    if timed then status[2 * slot - 1] = 0 end
    outbox:put(spack(HDR_RESULT, id, slot, st) .. body)
    done = done + 1
    if maxtasks and done >= maxtasks then break end
  end
end

-- ---- AsyncResult ---------------------------------------------------------------

local AsyncResult = {}
AsyncResult.__index = AsyncResult
AsyncResult.__name = "corral.AsyncResult"

local function new_result(pool, kind)
  return setmetatable({ _pool = pool, _kind = kind, _ready = false }, AsyncResult)
end

function AsyncResult:ready() return self._ready end

-- successful(): whether it ended without error; a StateError before ready.
function AsyncResult:successful()
  if not self._ready then raise("StateError", "the result is not ready", 2) end
  return self._err == nil
end

-- wait(t): true once ready, false on timeout.
function AsyncResult:wait(timeout)
  return self._pool:_wait_until(function() return self._ready end, timeout, 2)
end

-- get(t): the task's results (apply: all of f's results; map: the array).
-- Raises the task's error, or a Timeout error when t passes first.
function AsyncResult:get(timeout)
  if not self:wait(timeout) then raise("Timeout", "the result was not ready in time", 2) end
  if self._err then error(self._err, 0) end
  local v = self._value
  if self._kind == "apply" then return tunpack(v, 1, v.n) end
  return v
end

function AsyncResult.__tostring(self)
  return ("AsyncResult (%s)"):format(self._ready and (self._err and "failed" or "ready") or "pending")
end

-- ---- the Pool ---------------------------------------------------------------------

local Pool = {}
Pool.__index = Pool
Pool.__name = "corral.Pool"

local function check_count(v, what, level)
  if math.type(v) ~= "integer" or v < 1 then
    raise("ValueError", ("%s must be a positive integer, got %s"):format(what,
      type(v) == "string" and ("'" .. v .. "'") or tostring(v)), level + 1)
  end
end

local function callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return mt ~= nil and mt.__call ~= nil
end

local function check_timeout(t, level)
  if t ~= nil and (type(t) ~= "number" or t ~= t or t <= 0) then
    raise("ValueError", "task timeout must be a positive number of seconds, got " .. tostring(t), level + 1)
  end
end

-- Pool(n, {initializer=, initargs=, maxtasksperchild=, context=})
local function new_pool(n, opts)
  if n == nil then n = core.cpu_count() end
  check_count(n, "Pool size", 3)
  opts = opts or {}
  if type(opts) ~= "table" then raise("ValueError", "Pool options must be a table", 3) end
  for k in pairs(opts) do
    if k ~= "initializer" and k ~= "initargs" and k ~= "maxtasksperchild" and k ~= "context" then
      raise("ValueError", "Pool: unknown option '" .. tostring(k) .. "'", 3)
    end
  end
  if opts.initializer ~= nil and not callable(opts.initializer) then
    raise("ValueError", "Pool initializer must be a function, got " .. type(opts.initializer), 3)
  end
  if opts.initargs ~= nil and type(opts.initargs) ~= "table" then
    raise("ValueError", "Pool initargs must be an array table", 3)
  end
  if opts.maxtasksperchild ~= nil then check_count(opts.maxtasksperchild, "maxtasksperchild", 3) end
  local self = setmetatable({
    _n = n,
    _init = opts.initializer,
    _initargs = opts.initargs or {},
    _maxtasks = opts.maxtasksperchild,
    _ctx = opts.context or mp,
    _outbox = mp.Queue(),
    _status = mp.RawArray("d", 2 * n),
    _workers = {},
    _tasks = {},        -- id -> task
    _pending = {},      -- tasks waiting for a worker (FIFO, with a head index)
    _phead = 1,
    _sources = {},      -- lazy task sources (imap over iterators)
    _next_id = 0,
    _fids = setmetatable({}, { __mode = "k" }),
    _next_fid = 0,
    _state = "running",
    _outstanding = 0,   -- jobs not finished
    _pid = core.getpid(),
    _timed = 0,         -- jobs with a time limit, not finished
  }, Pool)
  for slot = 1, n do self:_start_worker(slot) end
  return self
end

function Pool:_start_worker(slot)
  local inbox = mp.Queue()
  local p = self._ctx.Process{
    target = worker_main, daemon = true, name = ("PoolWorker-%d"):format(slot),
    args = { inbox, self._outbox, slot, self._status, self._init, self._initargs, self._maxtasks },
  }
  p:start()
  self._workers[slot] = { proc = p, inbox = inbox, slot = slot, sent = {}, held = {}, nheld = 0,
                          quota = self._maxtasks or huge, pid = p.pid }
end

local function check_running(self, level)
  if self._state ~= "running" then
    raise("StateError", "the pool is " .. (self._state == "closed" and "closed" or "terminated")
      .. ": no new tasks", level + 1)
  end
end

function Pool:_fid(f)
  local id = self._fids[f]
  if not id then
    self._next_fid = self._next_fid + 1
    id = self._next_fid
    self._fids[f] = id
  end
  return id
end

-- Queues a task: job, index (position of its first item), mode, function, args.
function Pool:_add_task(job, index, mode, f, args, count)
  self._next_id = self._next_id + 1
  local t = { id = self._next_id, job = job, index = index, mode = mode, f = f, fid = self:_fid(f),
              args = args, count = count or 1 }
  self._tasks[t.id] = t
  self._pending[#self._pending + 1] = t
  job.tasks_left = job.tasks_left + 1
  return t
end

-- Encodes a task for worker w. Raises EncodeError (the caller's problem:
-- it is raised from the call that submitted it when possible).
local function encode_task(t, w)
  local has_fn = not w.sent[t.fid]
  local body = pack(has_fn and { t.f, t.args } or t.args, "args")
  local flags = (has_fn and 1 or 0) | MODE_CODE[t.mode] << 1 | (t.job.timeout and 8 or 0)
  return spack(HDR_TASK, t.id, t.fid, flags) .. body, has_fn
end

-- Names what could not be encoded as the caller knows it: f, or
-- args[i] for item i of a map, or args[k] for apply's k-th argument.
local function explain_encode_error(t, err)
  local ok, e = pcall(check_encodable, t.f, "f")
  if not ok then return e end
  if t.mode == "apply" then
    ok, e = pcall(check_encodable, t.args, "args")
    if not ok then return e end
  else
    for k = 1, t.count do
      ok, e = pcall(check_encodable, t.args[k], ("args[%d]"):format(t.index + k - 1))
      if not ok then return e end
    end
  end
  return err
end

-- Takes the next pending task, pulling from lazy sources when none is queued.
function Pool:_next_pending()
  local p = self._pending
  while true do
    local t = p[self._phead]
    if t then
      p[self._phead] = nil
      self._phead = self._phead + 1
      if self._tasks[t.id] then return t end -- else cancelled
    else
      self._pending, self._phead = {}, 1
      p = self._pending
      local src = self._sources[1]
      if not src then return nil end
      if not src:pull() then tremove(self._sources, 1) end
    end
  end
end

-- Gives tasks to workers with room in their inbox, level by level: every
-- idle worker gets a task before any worker gets a second one queued.
function Pool:_pump()
  if self._state == "terminated" then return end
  for level = 1, PREFETCH do
    for slot = 1, self._n do
      local w = self._workers[slot]
      if w and not w.dead and w.nheld < level and w.quota > 0 then
        local t = self:_next_pending()
        if not t then return end
        local ok, msg, has_fn = pcall(encode_task, t, w)
        if not ok then
          self:_fail(t, explain_encode_error(t, msg))
        else
          w.inbox:put(msg)
          if has_fn then w.sent[t.fid] = true end
          t.worker = w
          w.held[t.id] = t
          w.nheld = w.nheld + 1
          w.quota = w.quota - 1
        end
      end
    end
  end
end

local function job_progress(job, k)
  local bar = job.progress
  if bar then bar:step(k) end
end

-- A task ended with an error: the job records it at the task's position.
function Pool:_fail(t, err)
  if not self._tasks[t.id] then return end
  self._tasks[t.id] = nil
  local job = t.job
  job.tasks_left = job.tasks_left - 1
  job:on_error(t, err, 0, {})
  job_progress(job, t.count)
  if job.tasks_left == 0 and job:finished() then self:_job_done(job) end
end

function Pool:_job_done(job)
  if job.done then return end
  job.done = true
  self._outstanding = self._outstanding - 1
  if job.timeout then self._timed = self._timed - 1 end
  job:complete()
end

function Pool:_on_result(msg)
  local id, slot, st, pos = sunpack(HDR_RESULT, msg)
  local t = self._tasks[id]
  local w = self._workers[slot]
  if w and w.held[id] then
    w.held[id] = nil
    w.nheld = w.nheld - 1
  end
  if not t then return end
  self._tasks[id] = nil
  local job = t.job
  job.tasks_left = job.tasks_left - 1
  local ok, body = pcall(unpack, msg, pos)
  if not ok then
    job:on_error(t, body, 0, {})
  elseif st == ST_OK then
    job:on_ok(t, body)
  else
    job:on_error(t, body.err, body.n or 0, body.r or {})
  end
  job_progress(job, t.count)
  if job.tasks_left == 0 and job:finished() then self:_job_done(job) end
end

-- Reads every result already in the outbox.
function Pool:_drain()
  while true do
    local msg, why = self._outbox:get(0)
    if why then return end
    self:_on_result(msg)
  end
end

local function lost_error(w, t, how)
  local code = w.proc.exitcode
  if t.timed_out then
    return newerror("Timeout", ("task ran past its time limit of %gs; worker pid %d was killed"):format(
      t.timed_out, w.pid), { pid = w.pid })
  end
  return newerror("WorkerLost", ("worker pid %d %s while running the task (exit status %s)"):format(
    w.pid, how, tostring(code)), { pid = w.pid, exitcode = code })
end

-- Notices workers that ended; fails or re-queues what they held and starts
-- replacements.
function Pool:_check_workers()
  core._service()
  local any_dead = false
  for slot = 1, self._n do
    local w = self._workers[slot]
    if w and not w.dead and not w.proc:is_alive() then
      any_dead = true
      w.dead = true
    end
  end
  if not any_dead then return end
  self:_drain() -- results they sent before ending are not lost
  for slot = 1, self._n do
    local w = self._workers[slot]
    if w and w.dead then
      -- What is still in the inbox was never started: it goes to others.
      local requeue = {}
      while true do
        local msg, why = w.inbox:get(0)
        if why then break end
        if type(msg) == "string" then
          local id = sunpack("<i8", msg)
          local t = w.held[id]
          if t then
            w.held[id] = nil
            t.worker = nil
            requeue[#requeue + 1] = t
          end
        end
      end
      local code = w.proc.exitcode
      local how = (code and code < 0) and ("was killed by signal " .. -code) or "exited"
      for id, t in pairs(w.held) do
        if self._tasks[id] then self:_fail(t, lost_error(w, t, how)) end
      end
      w.inbox:close()
      w.proc:close()
      self._workers[slot] = nil
      -- re-queued tasks go first, in their order
      table.sort(requeue, function(a, b) return a.id < b.id end)
      local rest = {}
      for i = self._phead, #self._pending do rest[#rest + 1] = self._pending[i] end
      for i = #requeue, 1, -1 do tinsert(rest, 1, requeue[i]) end
      self._pending, self._phead = rest, 1
      if self._state ~= "terminated" and (self._state == "running" or self:_busy()) then
        self:_start_worker(slot)
      end
    end
  end
end

function Pool:_busy()
  return next(self._tasks) ~= nil or #self._sources > 0
end

-- Kills workers whose current task ran past its time limit.
function Pool:_check_deadlines()
  local soonest = huge
  local st = self._status
  for slot = 1, self._n do
    local w = self._workers[slot]
    if w and not w.dead then
      local id = floor(st[2 * slot - 1])
      local t = id ~= 0 and w.held[id]
      if t and t.job.timeout then
        local deadline = st[2 * slot] + t.job.timeout
        if now() >= deadline then
          if not t.timed_out then
            t.timed_out = t.job.timeout
            w.proc:kill()
          end
        else
          soonest = min(soonest, deadline)
        end
      end
    end
  end
  return soonest
end

-- The parent's wait: feeds, collects, watches workers and time limits until
-- cond() holds or timeout passes. Returns whether cond() holds.
function Pool:_wait_until(cond, timeout, level)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    raise("ValueError", "timeout must be a number >= 0 or nil, got " .. tostring(timeout), (level or 1) + 1)
  end
  local deadline = timeout and now() + timeout or huge
  local last_check = now()
  while true do
    self:_pump()
    if cond() then return true end
    if self._state == "terminated" then return cond() end
    local t_now = now()
    if t_now >= deadline then return false end
    local soonest = self._timed > 0 and self:_check_deadlines() or huge
    local slice = min(deadline, soonest, t_now + SLICE) - t_now
    local msg, why = self._outbox:get(max(slice, 0))
    if not why then
      self:_on_result(msg)
      self:_drain()
    end
    if why or now() - last_check > 0.05 then
      self:_check_workers()
      last_check = now()
    end
  end
end

-- ---- jobs ---------------------------------------------------------------------------

local Job = {}
Job.__index = Job

local function new_job(pool, kind, opts)
  local job = setmetatable({ pool = pool, kind = kind, tasks_left = 0, done = false,
                             timeout = opts and opts.timeout }, Job)
  pool._outstanding = pool._outstanding + 1
  if job.timeout then pool._timed = pool._timed + 1 end
  return job
end

function Job:finished() return not self.source_open end

-- apply_async -------------------------------------------------------------------

local ApplyJob = setmetatable({}, { __index = Job })
ApplyJob.__index = ApplyJob

function ApplyJob:on_ok(_, body) self.value = body end
function ApplyJob:on_error(_, err) self.err = err end
function ApplyJob:complete()
  local r = self.result
  r._value, r._err, r._ready = self.value, self.err, true
  if self.err then
    if self.error_callback then self.error_callback(self.err) end
  elseif self.callback then
    self.callback(tunpack(self.value, 1, self.value.n))
  end
end

local function check_opts(opts, allowed, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then raise("ValueError", "options must be a table", level + 1) end
  for k in pairs(opts) do
    if not allowed[k] then raise("ValueError", "unknown option '" .. tostring(k) .. "'", level + 1) end
  end
  check_timeout(opts.timeout, level + 1)
  for _, k in ipairs{ "callback", "error_callback" } do
    if opts[k] ~= nil and not callable(opts[k]) then
      raise("ValueError", k .. " must be a function", level + 1)
    end
  end
  return opts
end

local APPLY_OPTS = { callback = true, error_callback = true, timeout = true }

-- apply_async(f, args, {callback=, error_callback=, timeout=}) -> AsyncResult
function Pool:apply_async(f, args, opts)
  check_running(self, 2)
  if not callable(f) then raise("ValueError", "apply_async: f must be a function, got " .. type(f), 2) end
  if args ~= nil and type(args) ~= "table" then raise("ValueError", "apply_async: args must be a table", 2) end
  opts = check_opts(opts, APPLY_OPTS, 2)
  local job = setmetatable(new_job(self, "apply", opts), ApplyJob)
  job.callback, job.error_callback = opts.callback, opts.error_callback
  job.result = new_result(self, "apply")
  local t = self:_add_task(job, 1, "apply", f, args or {})
  self:_pump()
  -- An argument that cannot travel raises here, in the caller: either the
  -- dispatch just failed to encode it, or (no worker had room) a check says so.
  if job.done and iserror(job.err, "EncodeError") then error(job.err, 2) end
  if not t.worker and self._tasks[t.id] then
    local ok, err = pcall(check_encodable, f, "f")
    if ok then ok, err = pcall(check_encodable, t.args, "args") end
    if not ok then
      self._tasks[t.id] = nil -- dropped from the pending list when met there
      self._outstanding = self._outstanding - 1
      job.done = true
      error(err, 2)
    end
  end
  return job.result
end

-- apply(f, ...) -> all of f's results
function Pool:apply(f, ...)
  check_running(self, 2)
  if not callable(f) then raise("ValueError", "apply: f must be a function, got " .. type(f), 2) end
  return self:apply_async(f, tpack(...)):get()
end

-- map family ----------------------------------------------------------------------

-- A progress bar on stderr, drawn only when stderr is a terminal.
local Progress = {}
Progress.__index = Progress

local function new_progress(total)
  if not core._isatty(2) then return nil end
  return setmetatable({ total = total, done = 0, t0 = now(), last = 0 }, Progress)
end

function Progress:step(k)
  self.done = self.done + k
  local t = now()
  if t - self.last < 0.1 and self.done ~= self.total then return end
  self.last = t
  local rate = self.done / max(t - self.t0, 1e-9)
  local line
  if self.total then
    local width = 30
    local fill = floor(width * self.done / max(self.total, 1))
    local eta = rate > 0 and (self.total - self.done) / rate or 0
    line = ("[%s%s] %d/%d %.1f/s ETA %ds"):format(("#"):rep(fill), ("."):rep(width - fill),
      self.done, self.total, rate, ceil(eta))
  else
    line = ("%d done %.1f/s"):format(self.done, rate)
  end
  io.stderr:write("\r" .. line .. "\27[K")
  io.stderr:flush()
end

function Progress:finish()
  self.last = 0
  self:step(0)
  io.stderr:write("\n")
end

local MapJob = setmetatable({}, { __index = Job })
MapJob.__index = MapJob

-- Results arrive per chunk; `ordered` jobs hand them out by position.
function MapJob:on_ok(t, body)
  local r = body
  if self.values and not self.on_item then -- the common case, in bulk
    table.move(r, 1, t.count, t.index, self.values)
    self.got = self.got + t.count
    return
  end
  for i = 1, t.count do self:deliver(t.index + i - 1, true, r[i]) end
end

function MapJob:on_error(t, err, ndone, partial)
  for i = 1, ndone do self:deliver(t.index + i - 1, true, partial[i]) end
  self:deliver(t.index + ndone, false, err)
end

function MapJob:deliver(pos, ok, v)
  if ok then
    self.values[pos] = v
  elseif not self.err_pos or pos < self.err_pos then
    self.err_pos, self.err = pos, v
  end
  self.got = self.got + 1
  if self.on_item then self.on_item(pos, ok, v) end
end

function MapJob:complete()
  if self.progress then self.progress:finish() end
  local r = self.result
  if not r then return end
  r._ready = true
  if self.err then
    r._err = self.err
    if self.error_callback then self.error_callback(self.err) end
  else
    r._value = self.values
    if self.callback then self.callback(self.values) end
  end
end

local function default_chunksize(n, workers)
  if n == 0 then return 1 end
  return max(1, ceil(n / (workers * 4)))
end

local function check_chunksize(c, level)
  if c ~= nil and (math.type(c) ~= "integer" or c < 1) then
    raise("ValueError", "chunksize must be a positive integer, got " .. tostring(c), level + 1)
  end
end

local MAP_OPTS = { callback = true, error_callback = true, timeout = true, progress = true, chunksize = true }

-- Splits an array into chunk tasks.
local function add_chunks(pool, job, mode, f, list, chunksize)
  local n = #list
  local i = 1
  while i <= n do
    local j = min(n, i + chunksize - 1)
    local chunk = table.move(list, i, j, 1, {})
    if mode == "star" then
      for k = 1, j - i + 1 do
        if type(chunk[k]) ~= "table" then
          raise("ValueError", ("starmap: item %d is not an argument table"):format(i + k - 1), 4)
        end
      end
    end
    pool:_add_task(job, i, mode, f, chunk, j - i + 1)
    i = j + 1
  end
end

local function map_async(self, mode, f, list, chunksize, opts, level)
  check_running(self, level + 1)
  if not callable(f) then raise("ValueError", "f must be a function, got " .. type(f), level + 1) end
  if type(list) ~= "table" then raise("ValueError", "expected an array table of items, got " .. type(list), level + 1) end
  if type(chunksize) == "table" and opts == nil then opts, chunksize = chunksize, nil end
  opts = check_opts(opts, MAP_OPTS, level + 1)
  chunksize = chunksize or opts.chunksize
  check_chunksize(chunksize, level + 1)
  local n = #list
  chunksize = chunksize or default_chunksize(n, self._n)
  local job = setmetatable(new_job(self, "map", opts), MapJob)
  job.values, job.got, job.n = {}, 0, n
  job.callback, job.error_callback = opts.callback, opts.error_callback
  job.result = new_result(self, "map")
  if opts.progress then job.progress = new_progress(n) end
  -- Encode the first chunk now: an argument that cannot travel raises here.
  if n > 0 then
    local ok, err = pcall(check_encodable, f, "f")
    if not ok then
      self._outstanding = self._outstanding - 1
      error(err, level + 1)
    end
  end
  add_chunks(self, job, mode, f, list, chunksize)
  if n == 0 then self:_job_done(job) end
  self:_pump()
  return job.result
end

-- map(f, list [, chunksize] [, opts]) -> array of f(item)
function Pool:map(f, list, chunksize, opts)
  return map_async(self, "map", f, list, chunksize, opts, 2):get()
end

function Pool:map_async(f, list, chunksize, opts)
  return map_async(self, "map", f, list, chunksize, opts, 2)
end

-- starmap(f, list_of_arg_tables [, chunksize] [, opts])
function Pool:starmap(f, list, chunksize, opts)
  return map_async(self, "star", f, list, chunksize, opts, 2):get()
end

function Pool:starmap_async(f, list, chunksize, opts)
  return map_async(self, "star", f, list, chunksize, opts, 2)
end

-- imap --------------------------------------------------------------------------

-- A lazy source: pulls items from an array or an iterator function into
-- chunk tasks, only when the pool has room for them.
local Source = {}
Source.__index = Source

function Source:pull()
  local job, pool = self.job, self.pool
  if job.cancelled then job.source_open = false; return false end
  -- keep a bounded window of work ahead of the consumer
  if job.next_pos - job.yield_pos > self.window then return false end
  local chunk, n = {}, 0
  local star = job.mode == "star"
  while n < self.chunksize do
    local ok, v
    if self.list then
      if self.i > #self.list then v = nil; ok = true else v = self.list[self.i]; self.i = self.i + 1; ok = true end
    else
      ok, v = pcall(self.iter)
    end
    if not ok then
      job.source_open = false
      if n > 0 then pool:_add_task(job, job.next_pos, job.mode, self.f, chunk, n); job.next_pos = job.next_pos + n end
      job:deliver(job.next_pos, false, iserror(v) and v or newerror("RemoteError",
        "the input iterator raised: " .. tostring(v), {}))
      job.total = job.next_pos
      return false
    end
    if v == nil then
      job.source_open = false
      break
    end
    if star and type(v) ~= "table" then
      job.source_open = false
      if n > 0 then pool:_add_task(job, job.next_pos, job.mode, self.f, chunk, n); job.next_pos = job.next_pos + n end
      job:deliver(job.next_pos, false, newerror("ValueError", ("starmap: item %d is not an argument table"):format(job.next_pos), {}))
      job.total = job.next_pos
      return false
    end
    n = n + 1
    chunk[n] = v
  end
  if n > 0 then
    pool:_add_task(job, job.next_pos, job.mode, self.f, chunk, n)
    job.next_pos = job.next_pos + n
  end
  if not job.source_open then
    job.total = job.total or (job.next_pos - 1)
    if job.tasks_left == 0 then pool:_job_done(job) end
  end
  return job.source_open
end

local ImapJob = setmetatable({}, { __index = MapJob })
ImapJob.__index = ImapJob

function ImapJob:deliver(pos, ok, v)
  self.got = self.got + 1
  if self.ordered then
    self.buffer[pos] = { ok, v }
  else
    self.tail = self.tail + 1
    self.buffer[self.tail] = { ok, v }
  end
end

function ImapJob:finished() return not self.source_open end
function ImapJob:complete() if self.progress then self.progress:finish() end end

local function imap(self, mode, f, iterable, chunksize, opts, ordered, level)
  check_running(self, level + 1)
  if not callable(f) then raise("ValueError", "f must be a function, got " .. type(f), level + 1) end
  local list, iter
  if type(iterable) == "table" then list = iterable
  elseif type(iterable) == "function" then iter = iterable
  else raise("ValueError", "expected an array table or an iterator function, got " .. type(iterable), level + 1) end
  if type(chunksize) == "table" and opts == nil then opts, chunksize = chunksize, nil end
  opts = check_opts(opts, MAP_OPTS, level + 1)
  chunksize = chunksize or opts.chunksize or 1
  check_chunksize(chunksize, level + 1)
  local job = setmetatable(new_job(self, "imap", opts), ImapJob)
  job.mode, job.ordered = mode, ordered
  job.buffer, job.got, job.tail = {}, 0, 0
  job.next_pos, job.yield_pos = 1, 1
  job.source_open = true
  if opts.progress then job.progress = new_progress(list and #list or nil) end
  local src = setmetatable({ job = job, pool = self, f = f, list = list, i = 1, iter = iter,
                             chunksize = chunksize, window = self._n * PREFETCH * chunksize * 4 }, Source)
  self._sources[#self._sources + 1] = src
  local pool = self
  local finished = false
  local ubuf_head = 1
  return function()
    if finished then return nil end
    local pos = job.yield_pos
    local function have()
      if ordered then
        return job.buffer[pos] ~= nil or (not job.source_open and job.total and pos > job.total)
      end
      return job.buffer[ubuf_head] ~= nil or (not job.source_open and job.tasks_left == 0)
    end
    -- make sure the source is being pulled even if it was dropped by a full window
    local present = false
    for _, s in ipairs(pool._sources) do if s == src then present = true break end end
    if not present and job.source_open then pool._sources[#pool._sources + 1] = src end
    pool:_wait_until(have, nil, 2)
    local e
    if ordered then
      e = job.buffer[pos]
      job.buffer[pos] = nil
    else
      e = job.buffer[ubuf_head]
      job.buffer[ubuf_head] = nil
      if e then ubuf_head = ubuf_head + 1 end
    end
    if not e then
      finished = true
      return nil
    end
    job.yield_pos = pos + 1
    if not e[1] then
      finished = true
      job.cancelled = true
      -- tasks of this job still queued are dropped
      for id, t in pairs(pool._tasks) do
        if t.job == job and not t.worker then pool._tasks[id] = nil end
      end
      error(e[2], 2)
    end
    return e[2]
  end
end

-- imap(f, iterable [, chunksize] [, opts]) -> iterator over f(item), in order
function Pool:imap(f, iterable, chunksize, opts)
  return imap(self, "map", f, iterable, chunksize, opts, true, 2)
end

-- imap_unordered(f, iterable [, chunksize] [, opts]) -> iterator, as results come
function Pool:imap_unordered(f, iterable, chunksize, opts)
  return imap(self, "map", f, iterable, chunksize, opts, false, 2)
end

-- ---- closing ----------------------------------------------------------------------

-- close(): no more tasks; workers exit once the queued ones are done.
function Pool:close()
  if self._state == "running" then self._state = "closed" end
end

-- join(t): waits for every task and every worker; true once all ended,
-- false on timeout. The pool must be closed or terminated first.
function Pool:join(timeout)
  if self._state == "running" then raise("StateError", "close or terminate the pool before join", 2) end
  local ok = self:_wait_until(function() return not self:_busy() end, timeout, 2)
  if not ok then return false end
  for slot = 1, self._n do
    local w = self._workers[slot]
    if w and not w.stopping then
      w.stopping = true
      w.inbox:close()
    end
  end
  local deadline = timeout and now() + timeout
  for slot = 1, self._n do
    local w = self._workers[slot]
    if w then
      if not w.proc:join(deadline and max(0, deadline - now())) then return false end
      self._workers[slot] = nil
    end
  end
  return true
end

-- terminate(): stops every worker now; tasks not finished fail with Closed.
function Pool:terminate()
  if self._state == "terminated" then return end
  if self._pid ~= core.getpid() then return end -- a forked copy: not ours to stop
  self._state = "terminated"
  for slot = 1, self._n do
    local w = self._workers[slot]
    if w then w.proc:kill() end
  end
  for slot = 1, self._n do
    local w = self._workers[slot]
    if w then
      w.proc:join()
      w.inbox:close()
      self._workers[slot] = nil
    end
  end
  local err = newerror("Closed", "the pool was terminated before the task ended", {})
  for id, t in pairs(self._tasks) do
    self._tasks[id] = nil
    local job = t.job
    if not job.done then
      job:on_error(t, err, 0, {})
      job.tasks_left = 0
      job.source_open = false
      self:_job_done(job)
    end
  end
  for _, src in ipairs(self._sources) do
    local job = src.job
    if not job.done then
      job.source_open = false
      job:deliver(job.next_pos, false, err)
      job.total = job.next_pos
      self:_job_done(job)
    end
  end
  self._sources = {}
  self._pending, self._phead = {}, 1
  self._outbox:close()
end

Pool.__close = Pool.terminate
Pool.__gc = function(self) if rawget(self, "_state") ~= "terminated" then pcall(Pool.terminate, self) end end

function Pool.__tostring(self)
  return ("Pool (%d workers, %s)"):format(self._n, self._state)
end

return {
  Pool = new_pool,
  AsyncResult = AsyncResult,
  _worker_main = worker_main,
}
