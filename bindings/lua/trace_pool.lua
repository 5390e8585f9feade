-- corral.trace_pool: what a Pool shows of itself: its tracks and events in
-- the trace (corral.trace), its log lines (corral.log), and its live
-- statistics (pool:stats()). corral.pool and corral.pool_worker call these
-- at a few points; while tracing is off, nothing here runs per task.
--
-- Tracks: each worker's is named "Pool-N worker K" (N counts the pools of
-- this process, K is the worker's slot). On it, the engine writes the
-- worker's lifetime ("process") and the worker its tasks (named after the
-- call: "map", "starmap", "apply"; args: batch id, number in the batch of
-- the first task, tasks, items): a slice per task of 10 us or more, one
-- for each run of shorter ones (the engine's cr_trace_task). The parent's
-- track has the pool's instants (worker replaced) and its counter
-- "Pool-N backlog" (queued: tasks waiting in the parent; in_flight: sent
-- to workers, not answered).
-- A worker's death, and the task it lost (WorkerLost, Timeout), are
-- instants on the dead worker's track.
--
-- Live statistics: each worker keeps four slots of the pool's shared
-- status array (corral.pool_wire: stat_slots) up to date once per batch:
-- tasks done, seconds busy, when its running batch started (0: idle),
-- and when it became ready.
local _, core = ...

local wire = require "corral.pool_wire"
local trace = require "corral.trace"
local log = require "corral.log"

local floor, min = math.floor, math.min
local pairs, tostring, next = pairs, tostring, next
local now = core.time
local instant, counter = core._trace_instant, core._trace_counter
local write, enabled = log.write, log.enabled
local INFO, WARNING, DEBUG = log.INFO, log.WARNING, log.DEBUG
local slots, stat_slots = wire.slots, wire.stat_slots

local P = { trace = trace }

-- ---- the parent ------------------------------------------------------------------

local pools = 0

function P.pool_new(pool)
  pools = pools + 1
  pool._label = "Pool-" .. pools
  pool._replacing = {}  -- slot -> pid of the worker being replaced
  pool._replaced = 0
  pool._done_before = 0 -- tasks done by workers that are gone
  write(DEBUG, "%s: starting %d workers", pool._label, pool._n)
end

-- The name of the track and log lines of the worker in slot.
function P.worker_track(pool, slot)
  return ("%s worker %d"):format(pool._label, slot)
end

-- Tasks the worker w reported done (0 before it is ready).
local function worker_done(pool, w)
  local _, _, ready_at = slots(w.slot)
  if pool._status[ready_at] ~= w.pid then return 0 end
  return floor(pool._status[(stat_slots(w.slot))])
end

function P.worker_started(pool, w)
  local old = pool._replacing[w.slot]
  if not old then
    write(DEBUG, "%s: worker %d started (pid %d)", pool._label, w.slot, w.pid)
    return
  end
  pool._replacing[w.slot] = nil
  pool._replaced = pool._replaced + 1
  write(INFO, "%s: worker %d (pid %d) replaced by pid %d", pool._label, w.slot, old, w.pid)
  if trace.on then instant("worker replaced", "pool", 0, "slot", w.slot, "old_pid", old, "new_pid", w.pid) end
end

-- How a worker with exit code `code` ended.
local function how(code)
  if code and code < 0 then return "was killed by signal " .. -code end
  return "exited with exitcode " .. tostring(code)
end

-- Worker w was found dead: its replacement comes next.
function P.worker_died(pool, w)
  pool._done_before = pool._done_before + worker_done(pool, w)
  pool._replacing[w.slot] = w.pid
  local code = w.proc.exitcode
  write(DEBUG, "%s: worker %d (pid %d) %s", pool._label, w.slot, w.pid, how(code))
  if trace.on then instant("worker died", "fault", w.pid, "exitcode", code) end
end

-- Worker w ran its maxtasksperchild tasks and exits by itself.
function P.worker_retired(pool, w)
  pool._done_before = pool._done_before + worker_done(pool, w)
  pool._replacing[w.slot] = w.pid
  write(DEBUG, "%s: worker %d (pid %d) retires after its maxtasksperchild tasks", pool._label, w.slot, w.pid)
end

-- Task k of batch b was lost with its worker: err is its WorkerLost or
-- Timeout error.
function P.task_lost(pool, b, k, err)
  local w = b.worker
  local pos = b.index + (k - 1) * b.c
  if enabled(WARNING) then
    write(WARNING, "%s: task at item %d lost with worker %d (pid %d): %s: %s", pool._label, pos, w.slot, w.pid,
      tostring(err.kind), tostring(err.message))
  end
  if trace.on and err.kind ~= "Timeout" then -- a Timeout's instant is at the kill
    instant(err.kind, "fault", w.pid, "item", pos, "exitcode", err.exitcode)
  end
end

-- Worker w is killed: task k of batch b ran past its time limit.
function P.timeout_kill(pool, w, b, k)
  write(WARNING, "%s: a task of worker %d (pid %d) ran past its time limit of %gs: killing the worker",
    pool._label, w.slot, w.pid, b.job.timeout)
  if trace.on then instant("Timeout", "fault", w.pid, "item", b.index + (k - 1) * b.c, "limit", b.job.timeout) end
end

-- Tasks waiting in the parent, and tasks sent and not answered.
local function backlog(pool)
  local queued, in_flight = 0, 0
  local p = pool._pending
  for i = pool._phead, pool._ptail do
    local r = p[i]
    if r.n > 0 and not r.job.cancelled then queued = queued + (r.n + r.c - 1) // r.c end
  end
  for _, b in pairs(pool._inflight) do in_flight = in_flight + b.ntasks - b.answered end
  return queued, in_flight
end

-- The backlog counter, when it changed: at most one a millisecond while
-- tasks are in flight, and at once when none is (so the last one says
-- when the work ended).
function P.backlog(pool)
  local last = pool._last_backlog
  local t = now()
  if last and t - last[3] < 1e-3 and next(pool._inflight) ~= nil then return end
  local queued, in_flight = backlog(pool)
  if last then
    if last[1] == queued and last[2] == in_flight then return end
  else
    last = {}
    pool._last_backlog = last
  end
  last[1], last[2], last[3] = queued, in_flight, t
  counter(pool._label .. " backlog", "queued", queued, "in_flight", in_flight)
end

-- pool:stats(): the live view. See docs/api.md.
function P.stats(pool)
  local st, t = pool._status, now()
  local workers, total = {}, pool._done_before
  for slot = 1, pool._n do
    local w = pool._workers[slot]
    if w then
      local _, _, ready_at = slots(slot)
      local done_at, busy_at, since_at, began_at = stat_slots(slot)
      local done, busy, since, up = 0, 0, 0, 0
      if st[ready_at] == w.pid then
        done, busy, since, up = floor(st[done_at]), st[busy_at], st[since_at], t - st[began_at]
      end
      if since > 0 then busy = busy + (t - since) end
      local held = 0
      for _, b in pairs(w.held) do held = held + b.ntasks - b.answered end
      workers[slot] = { slot = slot, pid = w.pid, tasks_done = done, busy = up > 0 and min(1, busy / up) or 0,
                        task_age = since > 0 and t - since or nil, held = held, alive = not w.dead }
      total = total + done
    end
  end
  local queued, in_flight = backlog(pool)
  return { workers = workers, tasks_done = total, queued = queued, in_flight = in_flight,
           replaced = pool._replaced, state = pool._state }
end

-- ---- the worker ------------------------------------------------------------------

local st, done_at, busy_at, since_at, began_at
local busy, done = 0, 0
local NAMES = { [wire.APPLY] = "apply", [wire.MAP] = "map", [wire.STAR] = "starmap" }

-- In worker `slot`, once its initializer returned: its live counters start.
function P.worker_ready(status, slot)
  st = status
  done_at, busy_at, since_at, began_at = stat_slots(slot)
  busy, done = 0, 0
  st[done_at], st[busy_at], st[since_at] = 0, 0, 0
  st[began_at] = now()
end

-- A batch starts running; returns its start time.
function P.batch_begin()
  local t = now()
  st[since_at] = t
  return t
end

-- The batch that started at t0 ended after ntasks tasks, at t (nil: now).
function P.batch_end(t0, ntasks, t)
  busy = busy + ((t or now()) - t0)
  done = done + ntasks
  st[done_at], st[busy_at], st[since_at] = done, busy, 0
end

-- The name of the slices of mode's tasks ("map").
function P.task_name(mode) return NAMES[mode] end

-- task(name, t0, t1, id, k, n, flush): task k of batch id, n items, ran
-- from t0 to t1 (its slice, or its part of a shared one). flush, after
-- the last task of a batch when no other batch waits: what is buffered is
-- written before the last answer goes out, so what the parent has
-- received is in the file even if it kills the worker next
-- (Pool:terminate does).
P.task = core._trace_task


return P
