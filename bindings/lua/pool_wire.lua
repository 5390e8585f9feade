-- corral.pool_wire: the wire format that a Pool's parent (corral.pool) and
-- its workers (corral.pool_worker) speak. Every byte layout of their
-- messages is here; neither side writes a format of its own.
--
-- A message to a worker is one string: a header (batch id, function id,
-- flags, item count, chunk size), then a packed body: the items, or
-- {f, items} when the message brings the function. A batch holds one task
-- or several: task k is items (k-1)*c+1 .. k*c. An apply task is one item,
-- its argument table.
--
-- The worker answers every task on its own, in order, as soon as it ends:
-- a header (batch id, task number, status, seconds the task took), then a
-- packed body. Answering task by task is what lets the parent tell, when a
-- worker dies, which tasks of a batch ended, which one was running and
-- which never started. The body of ST_OK is the array of results (apply:
-- a table.pack of f's results), read in place by the job at the body's
-- byte position; every other status carries a failure {err=, n=, r=}.
--
-- Each worker has slots of a shared RawArray (see slots(), stat_slots()). Running
-- a task with a time limit, it writes a tag (see tag()) and the start time:
-- the start time first, the tag last, and the tag back to 0 after the
-- task, so a parent that reads a tag and then the time never pairs a tag
-- with an older start time. The third slot holds the worker's pid once its
-- initializer returned: a worker that ends without it died in its
-- initializer.
local _, core = ...

local spack, sunpack, tmove = string.pack, string.unpack, table.move
local pack, pack_slice, unpack = core._pack, core._pack_slice, core._unpack

local BATCH = "<i8i8BI4I4" -- batch id, function id, flags, items, chunk size
local RESULT = "<i8I4Bd"   -- batch id, task number, status, seconds it took (map tasks)
local HAS_FN, TIMED = 1, 8 -- flags; the mode is in bits 1-2
local TAG_SPAN = 128       -- more than the most tasks a batch holds

local M = {
  TAG_SPAN = TAG_SPAN,
  -- statuses of an answer
  ST_OK = 1,             -- body: the results
  ST_ERR = 2,            -- body: a failure, err after its first n items ended well (results r)
  -- One answer (task 0) for a whole message that did not run; body: a failure {err=}:
  ST_UNDECODED = 3,      -- the message could not be decoded here
  ST_NO_FN = 4,          -- it came without its function, and this worker has none
  -- An answer about no message (batch id 0), body: a failure {err=}:
  ST_INIT_FAILED = 5,    -- the initializer raised; the worker ends
  -- modes of a batch
  APPLY = 0, MAP = 1, STAR = 2,
}

-- ---- messages to a worker ------------------------------------------------------

-- The message of batch id: items[first .. first + nitems - 1] in tasks of c
-- items, run by function fid in mode, with a time limit when timed; f is
-- the function itself when the message brings it, else nil. Raises the
-- codec's EncodeError when something cannot travel.
function M.pack_batch(id, fid, mode, timed, items, first, nitems, c, f)
  local last = first + nitems - 1
  local body
  if f ~= nil then -- one value, so that f and the items share what they share
    body = pack({ f, tmove(items, first, last, 1, {}) }, "args")
  else
    body = pack_slice(items, first, last, "args")
  end
  local flags = (f ~= nil and HAS_FN or 0) | mode << 1 | (timed and TIMED or 0)
  return spack(BATCH, id, fid, flags, nitems, c) .. body
end

-- The header of a batch message: id, fid, mode, has_fn, timed, nitems, c,
-- and the byte position of its body.
function M.batch_header(msg)
  local id, fid, flags, nitems, c, pos = sunpack(BATCH, msg)
  return id, fid, (flags >> 1) & 3, flags & HAS_FN ~= 0, flags & TIMED ~= 0, nitems, c, pos
end

-- The body of a batch message at pos: its items, and its function when it
-- brings one. Raises when the body cannot be decoded here.
function M.batch_body(msg, pos, has_fn)
  local body = unpack(msg, pos)
  if has_fn then return body[2], body[1] end
  return body
end

-- ---- answers from a worker -----------------------------------------------------

-- The answer to task k of batch id: status st, ran seconds, and body (from
-- pack_results or pack_failure).
function M.pack_result(id, k, st, ran, body)
  return spack(RESULT, id, k, st, ran) .. body
end

-- The header of an answer: id, k, st, ran, and the byte position of its body.
function M.result_header(msg)
  return sunpack(RESULT, msg)
end

-- The body of ST_OK: the results. Raises the codec's EncodeError when one
-- cannot travel.
function M.pack_results(values)
  return pack(values, "result")
end

-- unpack_results(msg, pos) -> the results of an ST_OK body at pos;
-- unpack_results_into(msg, pos, dest, i) stores them at dest[i], dest[i+1]...
-- without a table of their own. Both raise when the body cannot be decoded.
M.unpack_results, M.unpack_results_into = unpack, core._unpack_into

-- The body of a failure: err, after the first n items of the task ended
-- well with results r (n = 0, r = nil when none did).
function M.pack_failure(err, n, r)
  return pack({ err = err, n = n or 0, r = r })
end

-- A failure's err, n, r from the answer's body at pos. Raises when the body
-- cannot be decoded.
function M.unpack_failure(msg, pos)
  local body = unpack(msg, pos)
  return body.err, body.n, body.r
end

-- ---- a worker's slots ------------------------------------------------------------

local SLOTS = 7 -- slots of the shared RawArray per worker
M.SLOTS = SLOTS

-- The indices of worker slot's tag, start time and "initialized" pid in
-- the shared RawArray.
function M.slots(slot)
  local base = SLOTS * (slot - 1)
  return base + 1, base + 2, base + 3
end

-- The indices of worker slot's live counters (corral.trace_pool, for
-- pool:stats()): tasks done, seconds busy, start of the batch it runs
-- (0: idle), and when it became ready.
function M.stat_slots(slot)
  local base = SLOTS * (slot - 1)
  return base + 4, base + 5, base + 6, base + 7
end

-- The tag of task k of batch id, and back: tag -> id, k.
function M.tag(id, k)
  return id * TAG_SPAN + k
end

function M.untag(tag)
  return tag // TAG_SPAN, tag % TAG_SPAN
end

return M
