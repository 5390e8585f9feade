-- corral.pool_worker: the worker side of a Pool, and the wire format that
-- the worker and the parent (corral.pool) speak.
--
-- A message to a worker is one string: the header BATCH (batch id, function
-- id, flags, item count, chunk size), then a packed body: the items, or
-- {f, items} when the message brings the function (flag 1). A batch holds
-- one task or several: task k is items (k-1)*c+1 .. k*c. An apply task is
-- one item, its argument table.
--
-- The worker answers every task on its own, in order, as soon as it ends:
-- RESULT (batch id, task number, status, seconds the task took), then a
-- packed body. Answering task by task is what lets the parent tell, when a
-- worker dies, which tasks of a batch ended, which one was running and
-- which never started.
--
-- A worker running a task with a time limit writes a tag (batch id * TAG_SPAN
-- + task number) and the start time into its two slots of a shared RawArray:
-- the start time first, the tag last, and the tag back to 0 after the task,
-- so a parent that reads a tag and then the time never pairs a tag with an
-- older start time.
local _, core = ...

local type, select, xpcall, pcall, tostring = type, select, xpcall, pcall, tostring
local spack, sunpack = string.pack, string.unpack
local tpack, tunpack = table.pack, table.unpack
local min = math.min
local now, newerror, iserror = core.time, core._newerror, core.iserror
local pack, unpack = core._pack, core._unpack

local M = {
  BATCH = "<i8i8BI4I4",  -- batch id, function id, flags, items, chunk size
  RESULT = "<i8I4Bd",    -- batch id, task number, status, seconds it took (map tasks)
  TAG_SPAN = 128,        -- more than the most tasks a batch holds
  ST_OK = 1,             -- body: the results
  ST_ERR = 2,            -- body: {err=, n=items that ended well, r=their results}
  -- One answer (task 0) for a whole message that did not run; body {err=}:
  ST_UNDECODED = 3,      -- the message could not be decoded here
  ST_NO_FN = 4,          -- it came without its function, and this worker has none
  -- An answer about no message (batch id 0), body {err=}:
  ST_INIT_FAILED = 5,    -- the initializer raised; the worker ends
  APPLY = 0, MAP = 1, STAR = 2, -- modes, in flags bits 1-2
  HAS_FN = 1, TIMED = 8,        -- flags
}
local ST_OK, ST_ERR, ST_UNDECODED, ST_NO_FN, ST_INIT_FAILED = M.ST_OK, M.ST_ERR, M.ST_UNDECODED, M.ST_NO_FN,
  M.ST_INIT_FAILED
local APPLY, STAR = M.APPLY, M.STAR

local function remote_error(e)
  local err = e.err
  local fields = { traceback = e.tb, pid = core.getpid() }
  if iserror(err) then fields.remote_kind = err.kind end
  return newerror("RemoteError", tostring(err), fields)
end

local function traceback(err)
  return { err = err, tb = debug.traceback(tostring(err), 2) }
end

-- The reply for results that ended well, unless they cannot travel.
local function reply(out)
  local ok, body = pcall(pack, out, "result")
  if ok then return ST_OK, body end
  local e = body
  if iserror(e) then e = newerror(e.kind, e.message, { pid = core.getpid() }) end
  return ST_ERR, pack({ n = 0, err = e })
end

-- Runs one task, items lo..hi; returns a status and a packed reply body.
-- apply replies with a table.pack of f's results, map and star with the
-- array of results; the first error ends a chunk, keeping what came before.
local function run_task(f, mode, items, lo, hi)
  if mode == APPLY then
    local args = items[lo]
    local r = tpack(xpcall(f, traceback, tunpack(args, 1, args.n or #args)))
    if not r[1] then return ST_ERR, pack({ n = 0, err = remote_error(r[2]) }) end
    return reply(tpack(select(2, tunpack(r, 1, r.n))))
  end
  if lo == hi then -- a task of one item, the common case: no closure
    local ok, v
    if mode == STAR then
      local a = items[lo]
      ok, v = xpcall(f, traceback, tunpack(a, 1, a.n or #a))
    else
      ok, v = xpcall(f, traceback, items[lo])
    end
    if not ok then return ST_ERR, pack({ n = 0, err = remote_error(v) }) end
    return reply({ v })
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
  if ok then return reply(res) end
  local n = i - lo
  for k = n + 1, hi - lo + 1 do res[k] = nil end
  local okp, body = pcall(pack, { r = res, n = n, err = remote_error(e) })
  if okp then return ST_ERR, body end
  return ST_ERR, pack({ n = 0, err = remote_error(e) })
end

local function decode_error(why)
  return newerror("DecodeError", "the task could not be decoded in the worker: " .. why, { pid = core.getpid() })
end

-- The body of a worker process.
function M.worker_main(inbox, outbox, slot, status, init, initargs, maxtasks)
  core._ignore_sigint()
  local BATCH, RESULT, TAG_SPAN, HAS_FN, TIMED = M.BATCH, M.RESULT, M.TAG_SPAN, M.HAS_FN, M.TIMED
  if init then
    local ok, e = xpcall(init, traceback, tunpack(initargs, 1, initargs.n or #initargs))
    if not ok then
      outbox:put(spack(RESULT, 0, 0, ST_INIT_FAILED, 0) .. pack({ err = remote_error(e) }))
      return
    end
  end
  local tag_at, start_at = 2 * slot - 1, 2 * slot
  local fns, done = {}, 0
  while true do
    local msg = inbox:get()
    if type(msg) ~= "string" then break end -- closed, or told to stop
    local id, fid, flags, nitems, c, pos = sunpack(BATCH, msg)
    local ntasks = (nitems + c - 1) // c
    local ok, body = pcall(unpack, msg, pos)
    local items, f, fail, st = body, nil, nil, ST_UNDECODED
    if not ok then
      fail = decode_error(iserror(body) and body.message or tostring(body))
    else
      if flags & HAS_FN ~= 0 then
        fns[fid] = body[1]
        items = body[2]
      end
      f = fns[fid]
      if f == nil then
        fail, st = decode_error("its function did not reach this worker"), ST_NO_FN
      end
    end
    if fail then
      outbox:put(spack(RESULT, id, 0, st, 0) .. pack({ err = fail }))
    else
      local mode, timed = (flags >> 1) & 3, flags & TIMED ~= 0
      -- The parent sizes batches of map tasks by what they cost: one clock
      -- read a task, which also counts the answer before it. apply tasks
      -- always travel alone and are not timed.
      local measure = mode ~= APPLY
      local t_prev = measure and now() or 0
      for k = 1, ntasks do
        local lo = (k - 1) * c + 1
        if timed then
          status[start_at] = now()
          status[tag_at] = id * TAG_SPAN + k
        end
        local rst, rbody = run_task(f, mode, items, lo, min(lo + c - 1, nitems))
        if timed then status[tag_at] = 0 end
        local ran = 0
        if measure then
          local t = now()
          ran, t_prev = t - t_prev, t
        end
        outbox:put(spack(RESULT, id, k, rst, ran) .. rbody)
      end
    end
    done = done + ntasks
    if maxtasks and done >= maxtasks then break end
  end
end

return M
