-- corral.pipeline_wire: the messages a pipeline's processes exchange and
-- the layout of each worker's slots in shared memory. The parent
-- (corral.pipeline) and the workers (corral.pipeline_worker) both use it;
-- neither writes a format of its own.
--
-- Items travel in chunks: a few consecutive items of the source in one
-- queue message. A chunk carries its sequence number `seq` (1, 2, 3... in
-- source order; every stage turns one input chunk into exactly one output
-- chunk with the same seq, empty or not, so seq stays dense down to the
-- parent) and the source position of each item: `lo .. lo + n - 1` when
-- they are consecutive, else an array `ix`. Every other message goes to
-- the parent's inbox: an item's error, a reduce worker's partial
-- accumulator, and a worker's "finished".
--
-- Each worker has SLOTS numbers in a shared RawArray (slots()): what it
-- works on, so that the parent knows which item a dead worker held, and
-- its counters, which outlive it (a replacement adds to them).
local _, core = ...

local spack, sunpack, sbyte = string.pack, string.unpack, string.byte
local pcall, tostring = pcall, tostring
local pack, unpack, check, newerror, iserror = core._pack, core._unpack, core._check, core._newerror, core.iserror

local M = {
  CHUNK = 1,   -- seq, lo, n, items [, ix]
  ERR = 2,     -- stage, index, the error object
  FIN = 3,     -- stage, slot: the worker ended its input and passed everything on
  PARTIAL = 4, -- stage: a reduce worker's accumulator
}
local CHUNK, ERR, FIN, PARTIAL = M.CHUNK, M.ERR, M.FIN, M.PARTIAL

local CHUNK_HDR = "<Bi8i8i4B" -- kind, seq, lo, n, has ix
local ERR_HDR = "<Bi4i8"      -- kind, stage, index
local FIN_HDR = "<Bi4i4"      -- kind, stage, slot
local PARTIAL_HDR = "<Bi4"    -- kind, stage

-- The kind of a message (its first byte).
function M.kind(msg) return sbyte(msg, 1) end

-- A chunk of n items with sequence number seq; ix is nil when item k is
-- source position lo + k - 1. Raises the codec's EncodeError when an item
-- cannot travel.
function M.pack_chunk(seq, lo, items, n, ix)
  if ix then return spack(CHUNK_HDR, CHUNK, seq, lo, n, 1) .. pack({ items, ix }, "item") end
  return spack(CHUNK_HDR, CHUNK, seq, lo, n, 0) .. pack(items, "item")
end

-- pack_chunk's message, leaving out each item that cannot travel: for
-- it, fail(index, err) is called with its EncodeError (err.pid = pid).
-- send_ix says whether ix must go in the message (else items are lo..).
function M.pack_chunk_or_drop(seq, lo, items, n, ix, send_ix, fail, pid)
  local ok, msg = pcall(M.pack_chunk, seq, lo, items, n, send_ix and ix or nil)
  if ok then return msg end
  local keep, kix, j = {}, {}, 0
  for k = 1, n do
    local index = ix and ix[k] or lo + k - 1
    local okk, e = pcall(check, items[k], "item")
    if okk then
      j = j + 1
      keep[j], kix[j] = items[k], index
    else
      fail(index, iserror(e) and newerror(e.kind, e.message, { pid = pid }) or
        newerror("EncodeError", tostring(e), { pid = pid }))
    end
  end
  return M.pack_chunk(seq, lo, keep, j, kix)
end

-- seq, lo, n, items, ix (nil when consecutive) of a chunk message.
function M.unpack_chunk(msg)
  local _, seq, lo, n, has_ix, pos = sunpack(CHUNK_HDR, msg)
  local body = unpack(msg, pos)
  if has_ix == 1 then return seq, lo, n, body[1], body[2] end
  return seq, lo, n, body, nil
end

-- The source position of item k of a chunk.
function M.index_of(lo, ix, k)
  if ix then return ix[k] end
  return lo + k - 1
end

function M.pack_err(stage, index, err)
  return spack(ERR_HDR, ERR, stage, index) .. pack(err)
end

function M.unpack_err(msg)
  local _, stage, index, pos = sunpack(ERR_HDR, msg)
  return stage, index, unpack(msg, pos)
end

function M.pack_fin(stage, slot) return spack(FIN_HDR, FIN, stage, slot) end

function M.unpack_fin(msg)
  local _, stage, slot = sunpack(FIN_HDR, msg)
  return stage, slot
end

function M.pack_partial(stage, acc) return spack(PARTIAL_HDR, PARTIAL, stage) .. pack(acc, "accumulator") end

function M.unpack_partial(msg)
  local _, stage, pos = sunpack(PARTIAL_HDR, msg)
  return stage, unpack(msg, pos)
end

-- ---- a worker's slots --------------------------------------------------------

-- Offsets inside a worker's slots. POS is the position, in the chunk the
-- worker holds last, of the item its function is running on (0: none,
-- -1: passing its output on); START when that item started (stages with a
-- time limit). The rest are counters: items taken in, items passed on,
-- errors, retries, seconds on items, seconds waiting for input, seconds
-- waiting for room downstream.
M.POS, M.START, M.IN, M.OUT, M.ERRS, M.RETRIES, M.BUSY, M.WAIT_IN, M.WAIT_OUT = 0, 1, 2, 3, 4, 5, 6, 7, 8
M.SLOTS = 9

-- The index in the shared RawArray of worker slot's first number.
function M.base(slot) return M.SLOTS * (slot - 1) + 1 end

return M
