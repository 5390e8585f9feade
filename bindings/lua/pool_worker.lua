-- corral.pool_worker: the worker side of a Pool. A worker takes batch
-- messages from its inbox, runs their tasks in order and answers each task
-- on the shared outbox as soon as it ends; the messages are those of
-- corral.pool_wire.
local _, core = ...

local wire = require "corral.pool_wire"
local obs = require "corral.trace_pool"

local type, select, xpcall, pcall, tostring = type, select, xpcall, pcall, tostring
local tpack, tunpack = table.pack, table.unpack
local min = math.min
local now, newerror, iserror = core.time, core._newerror, core.iserror
local pack_result, pack_results, pack_failure = wire.pack_result, wire.pack_results, wire.pack_failure
local ST_OK, ST_ERR, ST_UNDECODED, ST_NO_FN, ST_INIT_FAILED = wire.ST_OK, wire.ST_ERR, wire.ST_UNDECODED,
  wire.ST_NO_FN, wire.ST_INIT_FAILED
local APPLY, STAR = wire.APPLY, wire.STAR

local M = {}

-- remote_kind: the kind of the error object raised, "LuaError" for any
-- other value (a string from error("...")).
local function remote_error(e)
  local err = e.err
  local fields = { traceback = e.tb, pid = core.getpid(), remote_kind = iserror(err) and err.kind or "LuaError" }
  return newerror("RemoteError", tostring(err), fields)
end

-- The stack traceback of a task's error, without its message (the error
-- has it) and without the frames of this module below the task.
local function traceback(err)
  local tb = debug.traceback("", 2):gsub("^\n", "")
  local lines = {}
  for line in tb:gmatch("[^\n]+") do lines[#lines + 1] = line end
  while #lines > 1 do
    local last = lines[#lines]
    if last:find("^\tcorral/") or last:find("^\t%[C%]") or last:find("^\t%(%.%.%.tail calls%.%.%.%)") then
      lines[#lines] = nil
    else
      break
    end
  end
  return { err = err, tb = table.concat(lines, "\n") }
end

-- A task's error as its caller gets it: xpcall(f, M.traceback, ...) and,
-- when it fails, M.remote_error(e) (also used by pipeline workers and
-- corral.pool_redis).
M.traceback, M.remote_error = traceback, remote_error

-- The reply for results that ended well, unless they cannot travel.
local function reply(out)
  local ok, body = pcall(pack_results, out)
  if ok then return ST_OK, body end
  local e = body
  if iserror(e) then e = newerror(e.kind, e.message, { pid = core.getpid() }) end
  return ST_ERR, pack_failure(e)
end

-- Runs f over a task's items lo..hi: true and the results (apply: a
-- table.pack of f's results; map and star: the array of results), or
-- false, the error (as traceback gives it), the results that came before
-- it and their count: the first error ends a chunk, keeping what came
-- before. The local and the Redis Pool's workers both run tasks with it.
local function run_items(f, mode, items, lo, hi)
  if mode == APPLY then
    local args = items[lo]
    local r = tpack(xpcall(f, traceback, tunpack(args, 1, args.n or #args)))
    if not r[1] then return false, r[2], {}, 0 end
    return true, tpack(select(2, tunpack(r, 1, r.n)))
  end
  if lo == hi then -- a task of one item, the common case: no closure
    local ok, v
    if mode == STAR then
      local a = items[lo]
      ok, v = xpcall(f, traceback, tunpack(a, 1, a.n or #a))
    else
      ok, v = xpcall(f, traceback, items[lo])
    end
    if not ok then return false, v, {}, 0 end
    return true, { v }
  end
  local res, i = {}, lo - 1
  local ok, e = xpcall(function()
    if mode == STAR then
      for k = lo, hi do
        i = k
        local a = items[k]
        res[k - lo + 1] = f(tunpack(a, 1, a.n or #a))
      end
    else
      for k = lo, hi do
        i = k
        res[k - lo + 1] = f(items[k])
      end
    end
  end, traceback)
  if ok then return true, res end
  local n = i - lo
  for k = n + 1, hi - lo + 1 do res[k] = nil end
  return false, e, res, n
end
M.run_items = run_items

-- Runs one task, items lo..hi; returns a status and a packed reply body.
local function run_task(f, mode, items, lo, hi)
  local ok, v, res, n = run_items(f, mode, items, lo, hi)
  if ok then return reply(v) end
  local err = remote_error(v)
  if n > 0 then -- with the results before it, unless they cannot travel
    local okp, body = pcall(pack_failure, err, n, res)
    if okp then return ST_ERR, body end
  end
  return ST_ERR, pack_failure(err)
end

local function decode_error(why)
  return newerror("DecodeError", "the task could not be decoded in the worker: " .. why, { pid = core.getpid() })
end

-- The body of a worker process.
function M.worker_main(inbox, outbox, slot, status, init, initargs, maxtasks)
  core._ignore_sigint()
  local tag_at, start_at, ready_at = wire.slots(slot)
  if init then
    local ok, e = xpcall(init, traceback, tunpack(initargs, 1, initargs.n or #initargs))
    if not ok then
      outbox:put(pack_result(0, 0, ST_INIT_FAILED, 0, pack_failure(remote_error(e))))
      return
    end
  end
  obs.worker_ready(status, slot)
  status[ready_at] = core.getpid()
  local tracing = obs.trace.on
  local batch_header, batch_body, tag = wire.batch_header, wire.batch_body, wire.tag
  local fns, done = {}, 0
  while true do
    local msg = inbox:get()
    if type(msg) ~= "string" then break end -- closed, or told to stop
    local id, fid, mode, has_fn, timed, nitems, c, pos = batch_header(msg)
    local ntasks = (nitems + c - 1) // c
    local ok, items, f = pcall(batch_body, msg, pos, has_fn)
    local fail, st = nil, ST_UNDECODED
    if not ok then
      fail = decode_error(iserror(items) and items.message or tostring(items))
    else
      if has_fn then fns[fid] = f end
      f = fns[fid]
      if f == nil then
        fail, st = decode_error("its function did not reach this worker"), ST_NO_FN
      end
    end
    if fail then
      outbox:put(pack_result(id, 0, st, 0, pack_failure(fail)))
    else
      -- The parent sizes batches of map tasks by what they cost: one clock
      -- read a task, which also counts the answer before it. apply tasks
      -- always travel alone and are not timed.
      local measure = mode ~= APPLY
      local t_batch = obs.batch_begin()
      local t_prev = measure and t_batch or 0
      local tname = tracing and obs.task_name(mode)
      local t -- the end of the task before, when measured
      for k = 1, ntasks do
        local lo = (k - 1) * c + 1
        if timed then
          status[start_at] = now()
          status[tag_at] = tag(id, k)
        end
        local t0 = tracing and (measure and t_prev or now())
        local hi = min(lo + c - 1, nitems)
        local rst, rbody = run_task(f, mode, items, lo, hi)
        if timed then status[tag_at] = 0 end
        local ran = 0
        if measure then
          t = now()
          ran, t_prev = t - t_prev, t
        end
        if tracing then obs.task(tname, t0, t, id, k, hi - lo + 1, k == ntasks and inbox:qsize() == 0) end
        outbox:put(pack_result(id, k, rst, ran, rbody))
      end
      obs.batch_end(t_batch, ntasks, t)
    end
    done = done + ntasks
    if maxtasks and done >= maxtasks then break end
  end
end

return M
