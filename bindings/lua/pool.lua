-- corral.pool: worker pools that never hang, with closures as tasks.
--
-- Design
--   * Each worker is a daemon Process with an inbox Queue of its own; all
--     workers answer on one shared outbox Queue. The parent hands work to a
--     chosen worker, so it always knows what every worker holds: when a
--     worker dies, what it never started goes to another worker and the task
--     it was running fails with WorkerLost (or Timeout, when the parent
--     killed it for running past its time limit). Nothing can hang.
--   * Work waits in runs: a stretch of one job's items, cut into tasks of
--     `chunksize` items. The parent cuts a batch of tasks off the head run
--     and sends it as one message (the format is in corral.pool_wire).
--     A batch is one task until the job's tasks are measured to be short;
--     then it holds as many as take about BATCH_TIME, so a message's cost
--     is shared by many short tasks. Each task stays a task: it has its own
--     result or error, time limit, WorkerLost, and maxtasksperchild count.
--   * A function is packed into a message only the first time it goes to a
--     given worker; the worker keeps it by id.
--   * The parent feeds and collects while the caller waits in a pool call
--     (get, wait, map, imap, join...), and also from the engine's loop:
--     a watch on the outbox (core._watch) serves the pool in every other
--     corral wait (sleep, a queue's get, a lock...) and in a host's
--     uv_run, so callbacks run without a get. A worker holds at most PREFETCH
--     batches, so an imap over an endless iterator keeps the parent's
--     memory bounded.
--   * The parent never waits more than SLICE at a time, so a worker's death
--     is noticed within about a second whatever happens; it wakes sooner
--     for a task's time limit (the section "worker deaths").
local _, core = ...
local mp = require "corral"
local wire = require "corral.pool_wire"
local worker = require "corral.pool_worker"
local jobs = require "corral.pool_jobs"
local obs = require "corral.trace_pool" -- trace events, log lines, stats()
local trace = obs.trace
local progress_redraw = require("corral.progress").REDRAW

local type, pairs, ipairs, error, pcall, tostring, setmetatable, rawget, next, getmetatable =
  type, pairs, ipairs, error, pcall, tostring, setmetatable, rawget, next, getmetatable
local tremove, tmove, tsort = table.remove, table.move, table.sort
local floor, huge, min, max, ceil = math.floor, math.huge, math.min, math.max, math.ceil
local now, raise, newerror, iserror = core.time, core._raise, core._newerror, core.iserror
local check_encodable = core._check

local PREFETCH = 2         -- batches a worker holds: one running, one queued behind it
local SLICE = 1.0          -- longest single wait: a death is seen within it
local KILL_POLL = 0.005    -- how often to look for a worker killed for its time limit
local MIN_POLL = 0.01      -- shortest wait for a timed task that has not started yet
local BATCH_TIME = 1e-3    -- a batch of short tasks is sized to run about this long
local BATCH_TASKS = 64     -- most tasks in one batch (below wire.TAG_SPAN)
local BATCH_ITEMS = 256    -- most items in one batch: bigger chunks travel one by one
local ST_OK, ST_UNDECODED, ST_NO_FN, ST_INIT_FAILED = wire.ST_OK, wire.ST_UNDECODED, wire.ST_NO_FN,
  wire.ST_INIT_FAILED
local batch_header, result_header, unpack_failure = wire.batch_header, wire.result_header, wire.unpack_failure
local slots, untag = wire.slots, wire.untag
local APPLY, MAP, STAR = wire.APPLY, wire.MAP, wire.STAR
local NOTHING = {}

local Pool = {}
Pool.__index = Pool
Pool.__name = "corral.Pool"

-- ---- arguments ----------------------------------------------------------------

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

local function check_running(self, level)
  if self._broken then
    raise("StateError", "the pool stopped (" .. self._broken .. "): no new tasks", level + 1)
  end
  if self._state ~= "running" then
    raise("StateError", "the pool is " .. (self._state == "closed" and "closed" or "terminated")
      .. ": no new tasks", level + 1)
  end
end

local function check_opts(opts, allowed, level)
  if opts == nil then return NOTHING end
  if type(opts) ~= "table" then raise("ValueError", "options must be a table", level + 1) end
  for k in pairs(opts) do
    if not allowed[k] then raise("ValueError", "unknown option '" .. tostring(k) .. "'", level + 1) end
  end
  local t = opts.timeout
  if t ~= nil and (type(t) ~= "number" or t ~= t or t <= 0) then
    raise("ValueError", "task timeout must be a positive number of seconds, got " .. tostring(t), level + 1)
  end
  for _, k in ipairs{ "callback", "error_callback" } do
    if opts[k] ~= nil and not callable(opts[k]) then
      raise("ValueError", k .. " must be a function", level + 1)
    end
  end
  return opts
end

local function check_chunksize(c, level)
  if c ~= nil and (math.type(c) ~= "integer" or c < 1) then
    raise("ValueError", "chunksize must be a positive integer, got " .. tostring(c), level + 1)
  end
end

-- ---- the pool and its workers -----------------------------------------------------

-- Pool(n, {initializer=, initargs=, maxtasksperchild=, context=})
local function new_pool(n, opts)
  if type(opts) == "table" and opts.broker ~= nil then return require("corral.pool_redis").new(n, opts) end
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
    _status = mp.RawArray("d", wire.SLOTS * n), -- per worker: see corral.pool_wire
    _workers = {},
    _retired = {},      -- workers past maxtasksperchild, exiting by themselves
    _pending = {},      -- runs waiting for workers, a FIFO from _phead to _ptail
    _phead = 1,
    _ptail = 0,
    _inflight = {},     -- batch id -> batch sent and not fully answered
    _sources = {},      -- lazy sources of runs (imap)
    _next_id = 0,
    _fids = setmetatable({}, { __mode = "k" }),
    _next_fid = 0,
    _state = "running",
    _pid = core.getpid(),
    _timed = 0,         -- jobs with a time limit, not finished
    _batches_sent = 0,  -- messages sent to workers (for tests and tuning)
    _bars = {},         -- progress bars of unfinished jobs -> true
  }, Pool)
  obs.pool_new(self)
  for slot = 1, n do self:_start_worker(slot) end
  self._waiting = 0 -- pool calls running now: the watch leaves the outbox to them
  self._watch = core._watch(self._outbox, function() self:_serve() end)
  self._end_hold = setmetatable({}, { __close = function()
    self._waiting = self._waiting - 1
    if self._waiting == 0 then self._watch:pause(false) end
  end })
  return self
end

-- For the length of a pool call that waits on the outbox itself: the
-- watch stays quiet (a to-be-closed value ends it, however the call ends).
function Pool:_hold()
  self._waiting = self._waiting + 1
  if self._waiting == 1 then self._watch:pause(true) end
  return self._end_hold
end

-- Serves the pool from the engine's loop (its watch rang: an answer came
-- or a child ended), unless a pool call is running: takes in the answers,
-- runs callbacks, notices dead workers, hands out work.
function Pool:_serve()
  if self._state == "terminated" or self._waiting > 0 then return end
  self:_drain()
  self:_check_workers()
  self:_pump()
end

function Pool:_start_worker(slot)
  local _, _, ready_at = slots(slot)
  self._status[ready_at] = 0
  local inbox = mp.Queue()
  local p = self._ctx.Process{
    target = worker.worker_main, daemon = true, name = ("PoolWorker-%d"):format(slot),
    args = { inbox, self._outbox, slot, self._status, self._init, self._initargs, self._maxtasks, n = 7 },
  }
  p._track = obs.worker_track(self, slot)
  p:start()
  self._workers[slot] = { proc = p, inbox = inbox, slot = slot, sent = {}, held = {}, nheld = 0,
                          quota = self._maxtasks or huge, pid = p.pid }
  obs.worker_started(self, self._workers[slot])
end

-- A worker that ran its maxtasksperchild tasks exits by itself: its
-- replacement starts now, without waiting to see it go.
function Pool:_retire(w)
  obs.worker_retired(self, w)
  self._retired[#self._retired + 1] = w
  self._workers[w.slot] = nil
  if self._state == "running" or self:_busy() then self:_start_worker(w.slot) end
end

-- Reaps retired workers that have exited.
function Pool:_reap_retired()
  local retired = self._retired
  for i = #retired, 1, -1 do
    local w = retired[i]
    if not w.proc:is_alive() then
      w.inbox:close()
      w.proc:close()
      tremove(retired, i)
    end
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

-- ---- runs: work waiting for a worker -----------------------------------------------
--
-- A run is { job, mode, f, fid, items, first, n, c, index, lazy }: n items
-- from items[first], in tasks of c items; items[first] is the job's item
-- `index`. `lazy` runs come from an imap source a batch at a time.

function Pool:_add_run(job, mode, f, items, n, c, index, lazy)
  local r = { job = job, mode = mode, f = f, fid = self:_fid(f), items = items, first = 1, n = n, c = c,
              index = index, lazy = lazy }
  job.tasks_left = job.tasks_left + (n + c - 1) // c
  self._ptail = self._ptail + 1
  self._pending[self._ptail] = r
  return r
end

-- Puts runs back at the head of the queue, in their order.
function Pool:_push_front(runs)
  if #runs == 0 then return end
  local p, head, tail = self._pending, self._phead, self._ptail
  local fresh = {}
  tmove(runs, 1, #runs, 1, fresh)
  if head <= tail then tmove(p, head, tail, #runs + 1, fresh) end
  self._pending, self._phead, self._ptail = fresh, 1, #fresh
end

-- The run of batch b's tasks after its first k.
local function rest_of(b, k)
  local skip = k * b.c
  return { job = b.job, mode = b.mode, f = b.f, fid = b.fid, items = b.items, first = b.first + skip,
           n = b.nitems - skip, c = b.c, index = b.index + skip }
end

-- How many tasks the next batch of job's may hold: one until the job's
-- tasks are measured, then enough to run about BATCH_TIME. `left` is how
-- many the run holds: its last tasks are spread over the workers.
function Pool:_batch_size(job, c, index, left, w)
  local cost = job.cost
  if not cost or c > BATCH_ITEMS // 2 or (job.single_until and index <= job.single_until) then return 1 end
  local k = min(BATCH_TIME // max(cost, 1e-7), BATCH_TASKS, BATCH_ITEMS // c, w.quota, ceil(left / self._n))
  return k >= 1 and floor(k) or 1
end

-- The run at the head of the queue, pulling from a lazy source when none
-- waits; nil when there is no work.
function Pool:_head_run(w)
  while true do
    local r = self._pending[self._phead]
    if r then
      if r.n > 0 and not r.job.cancelled then return r end
      self._pending[self._phead] = nil
      self._phead = self._phead + 1
    else
      if self._ptail > 0 then self._pending, self._phead, self._ptail = {}, 1, 0 end
      local src = self._sources[1]
      if not src then return nil end
      if not src:pull(self, w) then tremove(self._sources, 1) end
    end
  end
end

-- Whether any work is queued, sent or still to come from a source.
function Pool:_busy()
  if next(self._inflight) ~= nil or #self._sources > 0 then return true end
  local p = self._pending
  for i = self._phead, self._ptail do
    local r = p[i]
    if r.n > 0 and not r.job.cancelled then return true end
  end
  return false
end

-- Cuts a batch for worker w off the head run r: items[first .. first +
-- nitems - 1] of the run's table, which is not copied.
function Pool:_cut(r, w)
  local c = r.c
  local k = self:_batch_size(r.job, c, r.index, r.lazy and huge or (r.n + c - 1) // c, w)
  local nitems = min(k * c, r.n)
  self._next_id = self._next_id + 1
  local b = { id = self._next_id, job = r.job, mode = r.mode, f = r.f, fid = r.fid, items = r.items,
              first = r.first, nitems = nitems, c = c, ntasks = (nitems + c - 1) // c, index = r.index,
              answered = 0 }
  r.first, r.n, r.index = r.first + nitems, r.n - nitems, r.index + nitems
  return b
end

-- Names what could not be encoded as the caller knows it: f, or
-- args[i] for item i of a map, or args[k] for apply's k-th argument.
local function explain_encode_error(b, err)
  local ok, e = pcall(check_encodable, b.f, "f")
  if not ok then return e end
  if b.mode == APPLY then
    ok, e = pcall(check_encodable, b.items[b.first], "args")
    if not ok then return e end
  else
    for k = 1, b.nitems do
      ok, e = pcall(check_encodable, b.items[b.first + k - 1], ("args[%d]"):format(b.index + k - 1))
      if not ok then return e end
    end
  end
  return err
end

local function encode_batch(b, w)
  local has_fn = not w.sent[b.fid]
  return wire.pack_batch(b.id, b.fid, b.mode, b.job.timeout ~= nil, b.items, b.first, b.nitems, b.c,
    has_fn and b.f or nil), has_fn
end

-- Sends batch b to worker w; false when it could not be encoded. Then a
-- batch of one task fails with EncodeError; a bigger one goes back to be
-- sent one task at a time, which finds the task at fault.
function Pool:_send(b, w)
  local ok, msg, has_fn = pcall(encode_batch, b, w)
  if not ok then
    if b.ntasks > 1 then
      b.job.single_until = b.index + b.nitems - 1
      self:_push_front({ rest_of(b, 0) })
    else
      self:_task_failed(b, 1, explain_encode_error(b, msg))
    end
    return false
  end
  w.inbox:put(msg)
  self._batches_sent = self._batches_sent + 1
  if has_fn then w.sent[b.fid] = true end
  b.worker = w
  w.held[b.id] = b
  w.nheld = w.nheld + 1
  w.quota = w.quota - b.ntasks
  self._inflight[b.id] = b
  return true
end

-- With no work left to hand out, a worker that is idle while another has
-- a batch queued behind its running one takes that batch over: the parent
-- takes the message back out of the busy worker's inbox (unless the worker
-- took it first) and it goes out again. So a long task never holds up
-- the work queued behind it while a worker is free.
function Pool:_rebalance()
  for slot = 1, self._n do
    local w = self._workers[slot]
    if w and not w.dead and w.nheld == 0 and w.quota > 0 then
      for vslot = 1, self._n do
        local v = self._workers[vslot]
        if v and not v.dead and v.nheld >= 2 then
          local msg, why = v.inbox:get(0)
          if not why and type(msg) == "string" then
            local id, _, _, has_fn = batch_header(msg)
            local b = v.held[id]
            self:_unhold(b, v)
            v.quota = v.quota + b.ntasks
            if has_fn then v.sent[b.fid] = nil end -- it never got there
            self:_push_front({ rest_of(b, 0) })
            return true
          end
        end
      end
      return false
    end
  end
  return false
end

-- Gives work to workers with room, level by level: every idle worker gets
-- a batch before any worker gets a second one queued.
function Pool:_pump()
  if self._state == "terminated" then return end
  for level = 1, PREFETCH do
    for slot = 1, self._n do
      local w = self._workers[slot]
      if w and not w.dead and w.nheld < level and w.quota > 0 then
        repeat
          local r = self:_head_run(w)
          if not r then
            if level == 1 and self:_rebalance() then return self:_pump() end
            return
          end
        until self:_send(self:_cut(r, w), w)
      end
    end
  end
end

-- ---- results ---------------------------------------------------------------------

function Pool:_job_done(job)
  if job.done then return end
  job.done = true
  if job.timeout then self._timed = self._timed - 1 end
  job:complete()
end

-- Counts a task of job's that ended, over `count` items, `nfailed` of
-- them (the last ones) without a result.
function Pool:_task_counted(job, count, nfailed)
  job.tasks_left = job.tasks_left - 1
  local bar = job.progress
  if bar then
    if nfailed and nfailed > 0 then
      if count > nfailed then bar:advance(count - nfailed) end
      bar:fail(nfailed)
    else
      bar:advance(count)
    end
  end
  if job.tasks_left == 0 and job:finished() then self:_job_done(job) end
end

-- Task k of batch b: the job position of its first item, and its item count.
local function task_span(b, k)
  local skip = (k - 1) * b.c
  return b.index + skip, min(b.c, b.nitems - skip)
end

-- Task k of batch b failed with err after its first ndone items ended
-- well (their results in partial).
function Pool:_task_failed(b, k, err, ndone, partial)
  local index, count = task_span(b, k)
  b.job:on_error(index, err, ndone or 0, partial or NOTHING)
  self:_task_counted(b.job, count, count - (ndone or 0))
end

-- Forgets batch b as held by worker w.
function Pool:_unhold(b, w)
  self._inflight[b.id] = nil
  w.held[b.id] = nil
  w.nheld = w.nheld - 1
end

-- Batch b, sent to worker w, is answered or going back; a worker with no
-- tasks left to run retires.
function Pool:_settle(b, w)
  self:_unhold(b, w)
  if w.nheld == 0 and w.quota <= 0 and not w.dead then self:_retire(w) end
end

-- A message the worker did not run. Without its function, it goes back
-- with the function; undecodable, its tasks go back to travel one by one,
-- and a task alone fails with the DecodeError.
function Pool:_on_unrun(b, w, st, err)
  self:_settle(b, w)
  w.sent[b.fid] = nil
  if st == ST_NO_FN or b.ntasks > 1 then
    if st == ST_UNDECODED then b.job.single_until = b.index + b.nitems - 1 end
    self:_push_front({ rest_of(b, 0) })
  else
    self:_task_failed(b, 1, err)
  end
end

function Pool:_on_result(msg)
  local id, k, st, ran, pos = result_header(msg)
  local b = self._inflight[id]
  if not b then -- its job was terminated, or the message is about no task
    if st == ST_INIT_FAILED then self:_on_init_failed(msg, pos) end
    return
  end
  local w = b.worker
  if st >= ST_UNDECODED then
    local _, err = pcall(unpack_failure, msg, pos)
    return self:_on_unrun(b, w, st, err)
  end
  b.answered = k
  if k == b.ntasks then self:_settle(b, w) end
  local job = b.job
  local cost = job.cost
  job.cost = cost and cost + (ran - cost) * 0.25 or ran
  if st ~= ST_OK then
    local _, err, ndone, partial = pcall(unpack_failure, msg, pos)
    return self:_task_failed(b, k, err, ndone, partial)
  end
  local index, count = task_span(b, k)
  local ok, err = pcall(job.take, job, index, count, msg, pos)
  if not ok then job:on_error(index, err, 0, NOTHING) end
  self:_task_counted(job, count)
end

-- How a worker with exit code `code` ended (a negative code is a signal).
local function how_it_ended(code)
  return (code and code < 0) and ("was killed by signal " .. -code) or "exited"
end

-- A worker's initializer raised: a pool whose workers cannot start runs
-- nothing, so it shuts down and every unfinished task fails with that error
-- (rather than starting worker after worker while the caller waits).
function Pool:_on_init_failed(msg, pos)
  local _, e = pcall(unpack_failure, msg, pos)
  local why = "its initializer raised: " .. (iserror(e) and e.message or tostring(e))
  self._broken = why
  self:_shut_down(newerror("RemoteError", "the pool stopped: " .. why,
    { traceback = iserror(e) and e.traceback or nil, pid = iserror(e) and e.pid or nil }))
end

-- Worker w died before its initializer returned (os.exit, a signal): as
-- when the initializer raises, the pool stops and every unfinished task
-- fails with that error.
function Pool:_on_init_died(w)
  local code = w.proc.exitcode
  local why = ("worker pid %d %s in its initializer (exit status %s)"):format(w.pid, how_it_ended(code),
    tostring(code))
  self._broken = why
  self:_shut_down(newerror("WorkerLost", "the pool stopped: " .. why, { pid = w.pid, exitcode = code }))
end

-- Reads every result already in the outbox.
function Pool:_drain()
  while true do
    local msg, why = self._outbox:get(0)
    if why then return end
    self:_on_result(msg)
  end
end

-- ---- worker deaths: WorkerLost and Timeout ----------------------------------------
--
-- A worker that ends while it holds work is noticed by _check_workers (the
-- parent's wait runs it at least every SLICE, and soon after a kill for a
-- time limit): the task it was running fails with WorkerLost, or with
-- Timeout when _check_deadlines killed it for running past its time limit.
-- A worker that ends before its initializer returned stops the pool.

-- The error of task k of batch b, lost with worker w, which `how` ended.
local function lost_error(w, b, k, how)
  if b.timed_out == k then
    return newerror("Timeout", ("task ran past its time limit of %gs; worker pid %d was killed"):format(
      b.job.timeout, w.pid), { pid = w.pid })
  end
  local code = w.proc.exitcode
  return newerror("WorkerLost", ("worker pid %d %s while running the task (exit status %s)"):format(
    w.pid, how, tostring(code)), { pid = w.pid, exitcode = code })
end

-- Notices workers that ended: the task each was running fails, what they
-- never started goes back to the head of the queue, and replacements start.
function Pool:_check_workers()
  core._service()
  if #self._retired > 0 then self:_reap_retired() end
  local any_dead = false
  for slot = 1, self._n do
    local w = self._workers[slot]
    if w and not w.dead and not w.proc:is_alive() then
      any_dead = true
      w.dead = true
    end
  end
  if not any_dead then return end
  self:_drain() -- what they answered before ending is not lost
  if self._init then
    for slot = 1, self._n do
      local w, _, _, ready_at = self._workers[slot], slots(slot)
      if w and w.dead and self._status[ready_at] ~= w.pid then return self:_on_init_died(w) end
    end
  end
  local lost = {}
  for slot = 1, self._n do
    local w = self._workers[slot]
    if w and w.dead then
      obs.worker_died(self, w)
      local unstarted = {}
      while true do
        local msg, why = w.inbox:get(0)
        if why then break end
        if type(msg) == "string" then unstarted[batch_header(msg)] = true end
      end
      local held = {}
      for _, b in pairs(w.held) do held[#held + 1] = b end
      tsort(held, function(a, b) return a.id < b.id end)
      local how = how_it_ended(w.proc.exitcode)
      local runs = {}
      for _, b in ipairs(held) do
        self._inflight[b.id] = nil
        if unstarted[b.id] then
          runs[#runs + 1] = rest_of(b, 0)
        else
          local k = b.answered + 1 -- results come in order: this one was running
          lost[#lost + 1] = { b, k, lost_error(w, b, k, how) }
          if k < b.ntasks then runs[#runs + 1] = rest_of(b, k) end
        end
      end
      w.inbox:close()
      w.proc:close()
      self._workers[slot] = nil
      self:_push_front(runs)
      if self._state ~= "terminated" and (self._state == "running" or self:_busy()) then
        self:_start_worker(slot)
      end
    end
  end
  for _, l in ipairs(lost) do
    obs.task_lost(self, l[1], l[2], l[3])
    self:_task_failed(l[1], l[2], l[3])
  end
end

-- Kills workers whose current task ran past its time limit; returns when
-- to look again: the soonest deadline of a running task; for a worker
-- holding a timed task that has not started, the earliest it could pass
-- its limit (it may start at once, and its start wakes nobody: the end of
-- the task before it does); soon, for a killed worker not yet seen gone.
function Pool:_check_deadlines()
  local soonest = huge
  local st = self._status
  local t_now = now()
  for slot = 1, self._n do
    local w = self._workers[slot]
    if w and not w.dead and w.nheld > 0 then
      local tag_at, start_at = slots(slot)
      local id, k = untag(floor(st[tag_at])) -- read before the start time: see corral.pool_wire
      local b = id ~= 0 and w.held[id]
      local limit = b and b.job.timeout
      if w.killed then
        soonest = min(soonest, t_now + KILL_POLL)
      elseif limit then
        local deadline = st[start_at] + limit
        if t_now >= deadline then
          b.timed_out = k
          w.killed = true
          obs.timeout_kill(self, w, b, k)
          w.proc:kill()
          soonest = min(soonest, t_now + KILL_POLL)
        else
          soonest = min(soonest, deadline)
        end
      else
        for _, hb in pairs(w.held) do
          limit = hb.job.timeout
          if limit then soonest = min(soonest, t_now + max(limit, MIN_POLL)) end
        end
      end
    end
  end
  return soonest
end

-- ---- the parent's wait --------------------------------------------------------------

-- Redraws the progress bars that are due (after workers wrote to the
-- terminal, the bar comes back below their output); returns how soon to
-- look again.
function Pool:_tick_bars()
  for bar in pairs(self._bars) do bar:tick() end
  return progress_redraw
end

-- The parent's wait: feeds, collects, watches workers and time limits until
-- cond() holds or timeout passes. Returns whether cond() holds.
function Pool:_wait_until(cond, timeout, level)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    raise("ValueError", "timeout must be a number >= 0 or nil, got " .. tostring(timeout), (level or 1) + 1)
  end
  local deadline = timeout and now() + timeout or huge
  local last_check = now()
  local _ <close> = self:_hold()
  while true do
    self:_pump()
    if trace.on then obs.backlog(self) end
    if cond() then return true end
    if self._state == "terminated" then return cond() end
    local t_now = now()
    if t_now >= deadline then return false end
    local soonest = self._timed > 0 and self:_check_deadlines() or huge
    local slice = min(deadline, soonest, t_now + SLICE) - t_now
    if next(self._bars) then slice = min(slice, self:_tick_bars()) end
    local msg, why = self._outbox:get(max(slice, 0))
    if not why then
      self:_on_result(msg)
      self:_drain()
    end
    if why or now() >= soonest or now() - last_check > 0.05 then
      self:_check_workers()
      last_check = now()
    end
  end
end

-- ---- apply ---------------------------------------------------------------------------

local APPLY_OPTS = { callback = true, error_callback = true, timeout = true }

-- Forgets a job that never started: its call raises instead.
function Pool:_drop_job(job, run)
  run.n = 0
  job.done = true
  if job.timeout then self._timed = self._timed - 1 end
end

-- apply_async(f, args, {callback=, error_callback=, timeout=}) -> AsyncResult, job
local function apply_async(self, f, args, opts)
  check_running(self, 2)
  if not callable(f) then raise("ValueError", "apply_async: f must be a function, got " .. type(f), 2) end
  if args ~= nil and type(args) ~= "table" then raise("ValueError", "apply_async: args must be a table", 2) end
  opts = check_opts(opts, APPLY_OPTS, 2)
  local job = jobs.apply_job(self, opts)
  local run = self:_add_run(job, APPLY, f, { args or {} }, 1, 1, 1)
  self:_pump()
  -- An argument that cannot travel raises here, in the caller: either the
  -- dispatch just failed to encode it, or (no worker had room) a check says so.
  if job.done and iserror(job.err, "EncodeError") then error(job.err, 2) end
  if run.n > 0 then
    local ok, err = pcall(check_encodable, f, "f")
    if ok then ok, err = pcall(check_encodable, args or {}, "args") end
    if not ok then
      self:_drop_job(job, run)
      error(err, 2)
    end
  end
  return job.result, job
end

function Pool:apply_async(f, args, opts) return (apply_async(self, f, args, opts)) end

-- ---- Ctrl-C in a blocking call ---------------------------------------------------------
--
-- A blocking call (apply, map, starmap, imap's iterator) that Ctrl-C
-- interrupts gives up its job: the job fails with the Interrupted error, its
-- queued tasks are dropped, and the workers running its tasks are killed and
-- replaced at once, so that the next call does not wait behind them. So
-- does any other error that leaves the wait (the host's own "interrupted!"
-- when SIGINT lands outside a corral wait): nobody waits for the job.

function Pool:_abandon(job, err)
  if job.done or self._state == "terminated" then return end
  -- the joins below wait: the watch must not take the killed workers in
  -- (and close them) under them; _check_workers does that, once
  local _ <close> = self:_hold()
  job:on_error(0, err, 0, NOTHING)
  self:_job_done(job)
  self:_cancel(job)
  self:_drain()
  local killed = {}
  for slot = 1, self._n do
    local w = self._workers[slot]
    local running -- the batch it runs: the first one it holds
    for id, b in pairs(w and not w.dead and w.held or NOTHING) do
      if not running or id < running.id then running = b end
    end
    if running and running.job == job then
      w.proc:kill()
      killed[#killed + 1] = w
    end
  end
  for _, w in ipairs(killed) do w.proc:join(1) end
  if #killed > 0 then self:_check_workers() end
end

-- The results of a blocking call of job's (pcall's), or its error raised,
-- after giving up the job if it had not ended (Ctrl-C, most often).
local function blocking_result(self, job, ok, ...)
  if ok then return ... end
  local err = ...
  self:_abandon(job, err)
  error(err, 0)
end

-- apply(f, ...) -> all of f's results
function Pool:apply(f, ...)
  check_running(self, 2)
  if not callable(f) then raise("ValueError", "apply: f must be a function, got " .. type(f), 2) end
  local r, job = apply_async(self, f, table.pack(...))
  return blocking_result(self, job, pcall(r.get, r))
end

-- ---- map, starmap ----------------------------------------------------------------------

local MAP_OPTS = { callback = true, error_callback = true, timeout = true, progress = true, chunksize = true }

local function default_chunksize(n, workers)
  if n == 0 then return 1 end
  return max(1, ceil(n / (workers * 4)))
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
  if mode == STAR then
    for i = 1, n do
      if type(list[i]) ~= "table" then
        raise("ValueError", ("starmap: item %d is not an argument table"):format(i), level + 1)
      end
    end
  end
  -- A function that cannot travel raises here, in the caller.
  if n > 0 then
    local ok, err = pcall(check_encodable, f, "f")
    if not ok then error(err, level + 1) end
  end
  local job = jobs.map_job(self, opts, n)
  if n == 0 then
    self:_job_done(job)
  else
    self:_add_run(job, mode, f, list, n, chunksize, 1)
    self:_pump()
  end
  return job.result, job
end

-- map(f, list [, chunksize] [, opts]) -> array of f(item)
function Pool:map(f, list, chunksize, opts)
  local r, job = map_async(self, MAP, f, list, chunksize, opts, 2)
  return blocking_result(self, job, pcall(r.get, r))
end

function Pool:map_async(f, list, chunksize, opts)
  return (map_async(self, MAP, f, list, chunksize, opts, 2))
end

-- starmap(f, list_of_arg_tables [, chunksize] [, opts])
function Pool:starmap(f, list, chunksize, opts)
  local r, job = map_async(self, STAR, f, list, chunksize, opts, 2)
  return blocking_result(self, job, pcall(r.get, r))
end

function Pool:starmap_async(f, list, chunksize, opts)
  return (map_async(self, STAR, f, list, chunksize, opts, 2))
end

-- ---- imap --------------------------------------------------------------------------------

-- A lazy source: pulls items from an array or an iterator function into
-- runs, a batch at a time, only when a worker has room for them.
local Source = {}
Source.__index = Source

-- Ends the source at position pos with error err.
function Source:fail(pool, chunk, n, err)
  local job = self.job
  job.source_open = false
  if n > 0 then
    pool:_add_run(job, job.mode, self.f, chunk, n, self.chunksize, job.next_pos, true)
    job.next_pos = job.next_pos + n
  end
  job:deliver(job.next_pos, false, err)
  job.total = job.next_pos
  return false
end

-- Adds a run for worker w; false once the source has nothing more now.
function Source:pull(pool, w)
  local job = self.job
  if job.cancelled then job.source_open = false; return false end
  -- keep a bounded window of work ahead of the consumer
  if job.next_pos - job.yield_pos > self.window then return false end
  local c = self.chunksize
  local want = pool:_batch_size(job, c, job.next_pos, huge, w) * c
  local chunk, n = {}, 0
  local star = job.mode == STAR
  while n < want do
    local ok, v
    if self.list then
      v = self.list[self.i]
      self.i = self.i + 1
      ok = true
    else
      ok, v = pcall(self.iter)
    end
    if not ok then return self:fail(pool, chunk, n, v) end -- it ran here: its own error, as raised
    if v == nil then
      job.source_open = false
      break
    end
    if star and type(v) ~= "table" then
      return self:fail(pool, chunk, n, newerror("ValueError",
        ("starmap: item %d is not an argument table"):format(job.next_pos + n), {}))
    end
    n = n + 1
    chunk[n] = v
  end
  if n > 0 then
    pool:_add_run(job, job.mode, self.f, chunk, n, c, job.next_pos, true)
    job.next_pos = job.next_pos + n
  end
  if not job.source_open then
    job.total = job.total or (job.next_pos - 1)
    if job.tasks_left == 0 then pool:_job_done(job) end
  end
  return job.source_open
end

-- Drops the queued work of a job whose iterator was abandoned.
function Pool:_cancel(job)
  job.cancelled = true
  job.source_open = false
  local p = self._pending
  for i = self._phead, self._ptail do
    local r = p[i]
    if r.job == job and r.n > 0 then
      job.tasks_left = job.tasks_left - (r.n + r.c - 1) // r.c
      r.n = 0
    end
  end
  for i = #self._sources, 1, -1 do
    if self._sources[i].job == job then tremove(self._sources, i) end
  end
  if job.tasks_left == 0 then self:_job_done(job) end
end

-- imap's arguments, checked: list or iter, chunksize, opts.
local function imap_args(iterable, chunksize, opts, level)
  local list, iter
  if type(iterable) == "table" then list = iterable
  elseif type(iterable) == "function" then iter = iterable
  else raise("ValueError", "expected an array table or an iterator function, got " .. type(iterable), level + 1) end
  if type(chunksize) == "table" and opts == nil then opts, chunksize = chunksize, nil end
  opts = check_opts(opts, MAP_OPTS, level + 1)
  chunksize = chunksize or opts.chunksize or 1
  check_chunksize(chunksize, level + 1)
  return list, iter, chunksize, opts
end

local function imap(self, mode, f, iterable, chunksize, opts, ordered, level)
  check_running(self, level + 1)
  if not callable(f) then raise("ValueError", "f must be a function, got " .. type(f), level + 1) end
  local list, iter
  list, iter, chunksize, opts = imap_args(iterable, chunksize, opts, level + 1)
  local job = jobs.imap_job(self, opts, mode, ordered, list and #list or nil)
  local src = setmetatable({ job = job, f = f, list = list, i = 1, iter = iter, chunksize = chunksize,
                             window = self._n * PREFETCH * max(4 * chunksize, 2 * BATCH_ITEMS) }, Source)
  self._sources[#self._sources + 1] = src
  local pool = self
  return jobs.imap_iterator(self, job, function()
    -- the source leaves the list when its window is full: put it back
    local present = false
    for _, s in ipairs(pool._sources) do if s == src then present = true break end end
    if not present and job.source_open then pool._sources[#pool._sources + 1] = src end
  end, function() pool:_cancel(job) end, function(err) pool:_abandon(job, err) end)
end

-- imap(f, iterable [, chunksize] [, opts]) -> iterator over f(item), in order
function Pool:imap(f, iterable, chunksize, opts)
  return imap(self, MAP, f, iterable, chunksize, opts, true, 2)
end

-- imap_unordered(f, iterable [, chunksize] [, opts]) -> iterator, as results come
function Pool:imap_unordered(f, iterable, chunksize, opts)
  return imap(self, MAP, f, iterable, chunksize, opts, false, 2)
end

-- ---- closing ---------------------------------------------------------------------------

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
  local _ <close> = self:_hold()
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
  for _, w in ipairs(self._retired) do
    if not w.proc:join(deadline and max(0, deadline - now())) then return false end
  end
  self:_reap_retired()
  return true
end

-- terminate(): stops every worker now; tasks not finished fail with Closed.
function Pool:terminate()
  self:_shut_down(newerror("Closed", "the pool was terminated before the task ended", {}))
end

-- Stops every worker now; tasks not finished fail with err.
function Pool:_shut_down(err)
  if self._state == "terminated" then return end
  if self._pid ~= core.getpid() then return end -- a forked copy: not ours to stop
  self._state = "terminated"
  for slot = 1, self._n do
    local w = self._workers[slot]
    if w then w.proc:kill() end
  end
  for _, w in ipairs(self._retired) do w.proc:kill() end
  for slot = 1, self._n do
    local w = self._workers[slot]
    if w then
      w.proc:join()
      w.inbox:close()
      self._workers[slot] = nil
    end
  end
  for _, w in ipairs(self._retired) do w.proc:join() end
  self:_reap_retired()
  -- Each unfinished job fails with err at its first position not ended.
  local first = {}
  local function note(job, pos)
    if not job.done and (not first[job] or pos < first[job]) then first[job] = pos end
  end
  for _, b in pairs(self._inflight) do note(b.job, b.index + b.answered * b.c) end
  for i = self._phead, self._ptail do
    local r = self._pending[i]
    if r.n > 0 then note(r.job, r.index) end
  end
  for _, src in ipairs(self._sources) do
    if src.job.source_open then note(src.job, src.job.next_pos) end
  end
  self._inflight, self._sources = {}, {}
  self._pending, self._phead, self._ptail = {}, 1, 0
  for job, pos in pairs(first) do
    job:on_error(pos, err, 0, NOTHING)
    job.tasks_left = 0
    job.source_open = false
    job.total = job.total or pos
    self:_job_done(job)
  end
  self._outbox:close()
  self._watch:stop()
end

Pool.__close = Pool.terminate
-- A pool collected while running is terminated (its class's terminate:
-- the Pool on Redis shares this).
Pool.__gc = function(self) if rawget(self, "_state") ~= "terminated" then pcall(self.terminate, self) end end

-- stats() -> the live view: per worker (by slot) pid, tasks_done, busy
-- (fraction of its time), task_age (seconds its running batch has run,
-- nil when idle), held; and tasks_done, queued, in_flight, replaced, state.
function Pool:stats()
  return obs.stats(self)
end

-- "Pool(workers=4, pending=3, running)": pending counts the tasks queued
-- or sent and not yet answered.
function Pool.__tostring(self)
  local pending = 0
  for i = self._phead, self._ptail do
    local r = self._pending[i]
    if r.n > 0 and not r.job.cancelled then pending = pending + (r.n + r.c - 1) // r.c end
  end
  for _, b in pairs(self._inflight) do pending = pending + b.ntasks - b.answered end
  return ("Pool(workers=%d, pending=%d, %s)"):format(self._n, pending, self._state)
end

return {
  Pool = new_pool,
  AsyncResult = jobs.AsyncResult,
  -- what the Pool on Redis (corral.pool_redis) shares: argument checks, job ends
  _shared = { opts = check_opts, chunksize = check_chunksize, count = check_count, callable = callable,
              imap_args = imap_args, job_done = Pool._job_done, task_counted = Pool._task_counted,
              close = Pool.close, gc = Pool.__gc },
}
