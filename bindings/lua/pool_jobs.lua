-- corral.pool_jobs: what a Pool call is waiting for. A job collects the
-- results of its tasks by position and ends in an AsyncResult (apply, map)
-- or an iterator's buffer (imap). A map or imap with {progress = true}
-- draws a corral.progress bar, advanced as tasks end.
--
-- The pool calls, for each task of a job (the task's first item at
-- `index`, `count` items):
--   job:take(index, count, msg, pos)  -- its results, packed at msg's byte pos
--   job:on_error(index, err, ndone, partial)  -- the first ndone items ended
-- and job:complete() once every task ended and job:finished() holds.
local _, core = ...
local progress = require "corral.progress"
local wire = require "corral.pool_wire"

local setmetatable, error, rawget = setmetatable, error, rawget
local tunpack = table.unpack
local raise, iserror, where = core._raise, core.iserror, core._where
local unpack_results, unpack_results_into = wire.unpack_results, wire.unpack_results_into

local M = {}

-- Raises err, a job's failure, in the caller: an error object made in a
-- worker or in the pool's wait gets the caller's line as its where.
function M.raise(err)
  if iserror(err) and rawget(err, "where") == nil then err.where = where() end
  error(err, 0)
end

-- ---- AsyncResult ---------------------------------------------------------------

local AsyncResult = {}
AsyncResult.__index = AsyncResult
AsyncResult.__name = "corral.AsyncResult"
M.AsyncResult = AsyncResult

local function new_result(pool, kind)
  return setmetatable({ _pool = pool, _kind = kind, _ready = false }, AsyncResult)
end

-- ready(): takes in what already arrived (without waiting), then tells.
function AsyncResult:ready()
  if not self._ready then self._pool:_serve() end
  return self._ready
end

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
  if self._err then M.raise(self._err) end
  local v = self._value
  if self._kind == "apply" then return tunpack(v, 1, v.n) end
  return v
end

function AsyncResult.__tostring(self)
  return ("AsyncResult (%s)"):format(self._ready and (self._err and "failed" or "ready") or "pending")
end

-- ---- jobs ----------------------------------------------------------------------

local Job = {}
Job.__index = Job

-- A new job of class (ApplyJob, MapJob, ImapJob) with options opts. Every
-- job has pool, tasks_left (tasks added and not ended), done and timeout (each
-- task's time limit, or nil); the pool adds cost (the seconds a task takes,
-- a moving average), single_until (positions up to which tasks travel one
-- at a time) and cancelled (an abandoned imap).
local function new_job(pool, class, opts)
  local job = setmetatable({ pool = pool, tasks_left = 0, done = false, timeout = opts.timeout }, class)
  if job.timeout then pool._timed = pool._timed + 1 end
  return job
end

-- Whether the job has every task it will have (imap: its source ended).
function Job:finished() return true end

-- apply_async: one task; its value is a table.pack of f's results.
local ApplyJob = setmetatable({}, { __index = Job })
ApplyJob.__index = ApplyJob

function M.apply_job(pool, opts)
  local job = new_job(pool, ApplyJob, opts)
  job.callback, job.error_callback = opts.callback, opts.error_callback
  job.result = new_result(pool, "apply")
  return job
end

function ApplyJob:take(_, _, msg, pos) self.value = unpack_results(msg, pos) end
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

-- map, starmap: n items; the array of results, or the error at the
-- smallest failing position.
local MapJob = setmetatable({}, { __index = Job })
MapJob.__index = MapJob

function M.map_job(pool, opts, n)
  local job = new_job(pool, MapJob, opts)
  job.values = {}
  job.callback, job.error_callback = opts.callback, opts.error_callback
  job.result = new_result(pool, "map")
  if opts.progress then job.progress = progress.new{ total = n } end
  if job.progress then pool._bars[job.progress] = true end
  return job
end

function MapJob:take(index, _, msg, pos)
  unpack_results_into(msg, pos, self.values, index) -- straight into place: no table per task
end

function MapJob:on_error(index, err, ndone, partial)
  for i = 1, ndone do self:deliver(index + i - 1, true, partial[i]) end
  -- a task's error names the item it raised on
  if iserror(err, "RemoteError") and rawget(err, "remote_kind") and rawget(err, "index") == nil then
    err.index = index + ndone
  end
  self:deliver(index + ndone, false, err)
end

function MapJob:deliver(pos, ok, v)
  if ok then
    self.values[pos] = v
  elseif not self.err_pos or pos < self.err_pos then
    self.err_pos, self.err = pos, v
  end
end

-- Ends the job's progress bar, if it has one.
function Job:end_progress()
  local bar = self.progress
  if bar then
    self.pool._bars[bar] = nil
    bar:finish()
  end
end

function MapJob:complete()
  self:end_progress()
  local r = self.result
  r._ready = true
  if self.err then
    r._err = self.err
    if self.error_callback then self.error_callback(self.err) end
  else
    r._value = self.values
    if self.callback then self.callback(self.values) end
  end
end

-- imap, imap_unordered: results wait in a buffer for the iterator, by
-- position (ordered) or in the order they came. The pool's source and
-- iterator keep next_pos (the position of the next item pulled), yield_pos
-- (of the next result yielded), source_open and total (set once the
-- source ended).
local ImapJob = setmetatable({}, { __index = MapJob })
ImapJob.__index = ImapJob

function M.imap_job(pool, opts, mode, ordered, total)
  local job = new_job(pool, ImapJob, opts)
  job.mode, job.ordered = mode, ordered
  job.buffer, job.tail = {}, 0
  job.next_pos, job.yield_pos = 1, 1
  job.source_open = true
  if opts.progress then job.progress = progress.new{ total = total } end
  if job.progress then pool._bars[job.progress] = true end
  return job
end

function ImapJob:finished() return not self.source_open end

function ImapJob:take(index, count, msg, pos)
  local r = unpack_results(msg, pos)
  for i = 1, count do self:deliver(index + i - 1, true, r[i]) end
end

function ImapJob:deliver(pos, ok, v)
  if self.ordered then
    self.buffer[pos] = { ok, v }
  else
    self.tail = self.tail + 1
    self.buffer[self.tail] = { ok, v }
  end
end

function ImapJob:complete() self:end_progress() end

-- The iterator that imap returns for job: each call waits in the pool
-- (pool:_wait_until) for the next result, by position or in the order
-- they came, and raises a task's error once its turn comes (an input
-- iterator's error as the iterator raised it). before_wait() runs before
-- each wait; on_error() before the error is raised (the rest of the job is
-- abandoned); on_abandon(err) when the wait itself raises, Ctrl-C most
-- often (the job is given up: its tasks dropped, the workers running them
-- replaced).
function M.imap_iterator(pool, job, before_wait, on_error, on_abandon)
  local ordered, finished, head = job.ordered, false, 1
  return function()
    if finished then return nil end
    local pos = job.yield_pos
    local function have()
      if ordered then
        return job.buffer[pos] ~= nil or (not job.source_open and job.total and pos > job.total)
      end
      return job.buffer[head] ~= nil or (not job.source_open and job.tasks_left == 0)
    end
    if before_wait then before_wait() end
    local ok, err = pcall(pool._wait_until, pool, have, nil, 2)
    if not ok then
      finished = true
      if on_abandon then on_abandon(err) end
      error(err, 0)
    end
    local e
    if ordered then
      e = job.buffer[pos]
      job.buffer[pos] = nil
    else
      e = job.buffer[head]
      job.buffer[head] = nil
      if e then head = head + 1 end
    end
    if not e then
      finished = true
      return nil
    end
    job.yield_pos = pos + 1
    if not e[1] then
      finished = true
      if on_error then on_error() end
      M.raise(e[2]) -- an error object, or the input iterator's own value as it raised it
    end
    return e[2]
  end
end

return M
