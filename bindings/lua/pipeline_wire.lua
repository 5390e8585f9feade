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
  KICK = 5,    -- nothing: the parent's own, to be served from the next wait (a pipeline started in the background)
}
local CHUNK, ERR, FIN, PARTIAL, KICK = M.CHUNK, M.ERR, M.FIN, M.PARTIAL, M.KICK

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

-- The seq of a chunk message, without decoding it.
function M.chunk_seq(msg)
  local _, seq = sunpack(CHUNK_HDR, msg)
  return seq
end

-- ---- who folded a chunk (reduce) ---------------------------------------------
--
-- A reduce stage's chunks must each be folded once, though a chunk may
-- come twice (sent again after a death). A shared ring records, for each
-- seq, the worker (a number unique to each worker started) that folds it,
-- or DONE once the accumulator holding it reached the parent; a worker
-- folds only a chunk nobody has. When a reduce worker dies, the parent
-- marks what it shipped DONE and forgets the rest of what it had.
M.OWNER_RING = 65536      -- entries (chunks that can be told apart at once)
local OWNER_SPAN = 1 << 20 -- entry = seq * OWNER_SPAN + owner
M.DONE = 0

-- Claims chunk seq for worker `me` in ring `owners`; false when another
-- worker has it or it is done. The caller holds the ring's lock.
function M.claim(owners, seq, me)
  local at = seq % M.OWNER_RING + 1
  local e = owners[at]
  if e // OWNER_SPAN == seq then return false end
  owners[at] = seq * OWNER_SPAN + me
  return true
end

-- Marks chunk seq done (its fold reached the parent).
function M.mark_done(owners, seq)
  owners[seq % M.OWNER_RING + 1] = seq * OWNER_SPAN + M.DONE
end

-- Marks chunk seq done if worker `who` has it.
function M.mark_done_if(owners, seq, who)
  local at = seq % M.OWNER_RING + 1
  if owners[at] == seq * OWNER_SPAN + who then owners[at] = seq * OWNER_SPAN + M.DONE end
end

-- Forgets every chunk worker `who` claimed and did not ship.
function M.forget(owners, who)
  for at = 1, M.OWNER_RING do
    local e = owners[at]
    if e ~= 0 and e % OWNER_SPAN == who then owners[at] = 0 end
  end
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

function M.pack_kick() return spack("<B", KICK) end

function M.pack_partial(stage, acc) return spack(PARTIAL_HDR, PARTIAL, stage) .. pack(acc, "accumulator") end

function M.unpack_partial(msg)
  local _, stage, pos = sunpack(PARTIAL_HDR, msg)
  return stage, unpack(msg, pos)
end

-- ---- a worker's slots --------------------------------------------------------

-- Offsets inside a worker's slots. POS is the position, in the chunk CUR
-- it works on, of the item its function is running on, or what it
-- does between items (the P_ values below); START when that item started
-- (stages with a time limit). The rest are counters: items taken in, items
-- passed on, errors, retries, seconds on items, seconds waiting for input,
-- seconds waiting for room downstream.
M.POS, M.START, M.IN, M.OUT, M.ERRS, M.RETRIES, M.BUSY, M.WAIT_IN, M.WAIT_OUT = 0, 1, 2, 3, 4, 5, 6, 7, 8
M.CUR = 9 -- the seq of the chunk the worker works on (which of the chunks it holds POS is about)
M.SINCE = 10 -- when it began running the items of that chunk; 0 between chunks (the live stats)
M.SLOTS = 11

-- What a worker does when it runs no item (POS <= 0).
M.P_IDLE = 0     -- nothing held that is not accounted for
M.P_PASSING = -1 -- putting the output of chunk CUR on the next queue
M.P_FAST = -2    -- running the items of chunk CUR without recording each
M.P_PASSED = -3  -- chunk CUR's output is on the next queue
M.P_TAKING = -4  -- taking a chunk from its input (what it took may not be in `held` yet)
M.P_SHIPPED = -5 -- (reduce) its accumulator, with everything it holds folded in, is on the inbox

-- The index in the shared RawArray of worker slot's first number.
function M.base(slot) return M.SLOTS * (slot - 1) + 1 end

return M
