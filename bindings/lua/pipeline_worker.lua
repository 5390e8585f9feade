-- corral.pipeline_worker: what a pipeline's processes run. A stage worker
-- takes chunks (corral.pipeline_wire) from its stage's input queue, runs
-- the stage function on each item and puts one chunk on the next queue for
-- each chunk it took; a producer runs the source's function and puts what
-- it emits in chunks on the first stage's queue; the batch worker regroups
-- items. Each ends when its input queue is closed and drained, after
-- telling the parent (FIN).
--
-- Before it works on a chunk a stage worker puts the chunk in its `held`
-- queue, and before each item it writes the item's position in its slots:
-- so when it dies the parent knows what it held and which item was running.
-- It takes the chunk back out of `held` once its output is passed on (a
-- reduce worker: once its accumulator is).
local _, core = ...

local wire = require "corral.pipeline_wire"
local pool_worker = require "corral.pool_worker"
local obs = require "corral.trace_pipeline"
local trace = obs.trace

local type, xpcall, pcall, tostring, pairs, ipairs = type, xpcall, pcall, tostring, pairs, ipairs
local tsort = table.sort
local now, newerror, iserror, getpid = core.time, core._newerror, core.iserror, core.getpid
local pack_chunk, unpack_chunk, pack_err, pack_fin, pack_partial, pack_chunk_or_drop =
  wire.pack_chunk, wire.unpack_chunk, wire.pack_err, wire.pack_fin, wire.pack_partial, wire.pack_chunk_or_drop
local unpack = core._unpack
local traceback, remote_error = pool_worker.traceback, pool_worker.remote_error

local FLUSH_TIME = 0.002 -- a producer passes on what it emitted at least this often (while it emits)
local SHIP_TIME = 0.5    -- a reduce worker sends its accumulator at least this often...
local SHIP_CHUNKS = 64   -- ...or after folding this many chunks

local M = {}

-- The error of item `index` of stage `name`, for the parent.
local function item_error(err, name, index)
  err.stage, err.index = name, index
  return err
end

-- The counters of a worker's slots, kept in locals while it runs and
-- stored after each chunk; a replacement starts from what its slot holds.
local function counters(st, b)
  return { st[b + wire.IN], st[b + wire.OUT], st[b + wire.ERRS], st[b + wire.RETRIES], st[b + wire.BUSY],
           st[b + wire.WAIT_IN], st[b + wire.WAIT_OUT] }
end

local function store(st, b, c)
  st[b + wire.IN], st[b + wire.OUT], st[b + wire.ERRS], st[b + wire.RETRIES] = c[1], c[2], c[3], c[4]
  st[b + wire.BUSY], st[b + wire.WAIT_IN], st[b + wire.WAIT_OUT] = c[5], c[6], c[7]
end

-- Puts msg on q, counting the seconds it waited for room.
local function put_timed(q, msg, c)
  local t = now()
  q:put(msg)
  c[7] = c[7] + (now() - t)
end

-- ---- map, filter, flat_map, reduce -------------------------------------------------

-- The body of a stage worker. cfg: kind, fn, name, g (stage number), slot,
-- qin, qout, inbox, held, st (the slots' RawArray), retries, timed, rescue
-- (chunk messages to run first: what a dead worker held), init (reduce:
-- the packed initial accumulator).
function M.stage_main(cfg)
  core._ignore_sigint()
  local kind, fn, name, g = cfg.kind, cfg.fn, cfg.name, cfg.g
  local qin, qout, inbox, held, st = cfg.qin, cfg.qout, cfg.inbox, cfg.held, cfg.st
  local b = wire.base(cfg.slot)
  local POS, START, CUR, SINCE = b + wire.POS, b + wire.START, b + wire.CUR, b + wire.SINCE
  local P_IDLE, P_PASSING, P_FAST, P_PASSED, P_TAKING, P_SHIPPED = wire.P_IDLE, wire.P_PASSING, wire.P_FAST,
    wire.P_PASSED, wire.P_TAKING, wire.P_SHIPPED
  local retries, timed = cfg.retries or 0, cfg.timed
  local reduce, is_map, is_filter = kind == "reduce", kind == "map", kind == "filter"
  local c = counters(st, b)
  local tracing = trace.on
  local acc = reduce and unpack(cfg.init) or nil
  -- messages in `held`; of them, the first nworked were worked on (a
  -- reduce worker's, folded or left to another worker)
  local nheld, nworked, shipped_at = 0, 0, now()

  local function fail(index, err)
    c[3] = c[3] + 1
    inbox:put(pack_err(g, index, item_error(err, name, index)))
  end

  -- The chunk being worked on; k is the item its function runs on.
  local items, ix, lo, n, out, oix, m, k

  -- What item k's result v gives.
  local function accept(v)
    if is_map then
      if v ~= nil then m = m + 1; out[m], oix[m] = v, ix and ix[k] or lo + k - 1 end
    elseif is_filter then
      if v then m = m + 1; out[m], oix[m] = items[k], ix and ix[k] or lo + k - 1 end
    elseif reduce then
      acc = v
    elseif type(v) == "table" then -- flat_map
      local index = ix and ix[k] or lo + k - 1
      for j = 1, #v do m = m + 1; out[m], oix[m] = v[j], index end
    elseif v ~= nil then
      fail(ix and ix[k] or lo + k - 1, newerror("ValueError",
        "flat_map's function must return an array table or nil, got " .. type(v), { pid = getpid() }))
    end
  end

  -- Items k+1..n; an error leaves k at the item that raised. One
  -- protected call for the whole chunk, not one per item. A careful run
  -- records each item's position before running it; a fast one only that
  -- it works on this chunk (POS = -2), and a death then sends the chunk to
  -- the replacement, which runs it carefully.
  local careful
  local function run_rest()
    if not careful then
      st[POS] = P_FAST
      if is_map then
        while k < n do
          k = k + 1
          local v = fn(items[k])
          if v ~= nil then m = m + 1; out[m], oix[m] = v, ix and ix[k] or lo + k - 1 end
        end
      else
        while k < n do
          k = k + 1
          if reduce then accept(fn(acc, items[k])) else accept(fn(items[k])) end
        end
      end
      return
    end
    while k < n do
      k = k + 1
      if timed then st[START] = now() end
      st[POS] = k
      if reduce then accept(fn(acc, items[k])) else accept(fn(items[k])) end
    end
  end

  -- Item k raised e: it is tried again up to `retries` times, then fails.
  local function retry(e)
    for _ = 1, retries do
      c[4] = c[4] + 1
      local ok, v
      if reduce then ok, v = xpcall(fn, traceback, acc, items[k]) else ok, v = xpcall(fn, traceback, items[k]) end
      if ok then return accept(v) end
      e = v
    end
    fail(ix and ix[k] or lo + k - 1, remote_error(e))
  end

  local function process(msg, rescued)
    careful = timed or rescued
    local seq
    seq, lo, n, items, ix = unpack_chunk(msg)
    st[CUR] = seq
    out, oix, m, k = {}, {}, 0, 0
    local t0 = now()
    st[SINCE] = t0
    while true do
      local ok, e = xpcall(run_rest, traceback)
      if ok then break end
      retry(e)
    end
    c[5] = c[5] + (now() - t0)
    st[b + wire.BUSY], st[SINCE] = c[5], 0 -- the live stats count this chunk's time once
    c[1], c[2] = c[1] + n, c[2] + m
    if tracing then obs.chunk(name, t0, seq, n, ix and ix[1] or lo, cfg.flow_ph, cfg.flow_base) end
    st[POS] = P_PASSING
    -- reduce passes on an empty chunk: what the parent counts to let more in
    local reply = pack_chunk_or_drop(seq, lo, out, m, oix, not (ix == nil and m == n), fail, getpid())
    items, out, oix = nil, nil, nil
    put_timed(qout, reply, c)
    st[POS] = P_PASSED
  end

  local owners, owners_lock, me = cfg.owners, cfg.owners_lock, cfg.wid
  local held_seqs = {}

  local function ship()
    if nworked == 0 then return end
    st[POS] = P_PASSING
    inbox:put(pack_partial(g, acc))
    st[POS] = P_SHIPPED
    owners_lock:acquire()
    for i = 1, #held_seqs do wire.mark_done(owners, held_seqs[i]) end
    owners_lock:release()
    held_seqs = {}
    acc = unpack(cfg.init)
    for _ = 1, nworked do held:get(0) end -- what it has not worked on yet stays
    nheld, nworked, shipped_at = nheld - nworked, 0, now()
    st[POS] = P_IDLE
  end

  -- Works on msg, already in `held`: a map-like stage then takes it out
  -- (held is a FIFO, and msg is its first); a reduce worker keeps it until
  -- it ships its accumulator, and folds it only if no other worker has it
  -- (it may come twice).
  local function work(msg, rescued)
    local mine = true
    if reduce then
      local seq = wire.chunk_seq(msg)
      owners_lock:acquire()
      mine = wire.claim(owners, seq, me)
      owners_lock:release()
      if mine then held_seqs[#held_seqs + 1] = seq end
    end
    if mine then process(msg, rescued) end
    if not reduce then
      held:get(0)
      nheld = nheld - 1
      st[POS] = P_IDLE
      return store(st, b, c)
    end
    nworked = nworked + 1
    if nworked >= SHIP_CHUNKS or now() - shipped_at >= SHIP_TIME then
      ship()
    end
    store(st, b, c)
  end

  -- What a dead worker held: the parent put it in `held` before this worker
  -- started, so that none of it is lost if this one dies too.
  local rescue = cfg.rescue or {}
  nheld = #rescue
  for _, msg in ipairs(rescue) do work(msg, true) end
  while true do
    local t = now()
    st[POS] = P_TAKING
    local msg, why = qin:get()
    c[6] = c[6] + (now() - t)
    if why then break end
    held:put(msg)
    st[POS] = P_IDLE
    nheld = nheld + 1
    work(msg, false)
  end
  st[POS] = P_IDLE
  if reduce then ship() end
  store(st, b, c)
  inbox:put(pack_fin(g, cfg.slot))
end

-- ---- batch -----------------------------------------------------------------------

-- The body of the batch worker (one per batch stage): groups consecutive
-- items into arrays of cfg.size, in seq order when cfg.ordered; each input
-- chunk gives one output chunk holding the groups it completed (a group's
-- index is its first item's); the last, short group goes in one more chunk.
function M.batch_main(cfg)
  core._ignore_sigint()
  local size, qin, qout, st, g = cfg.size, cfg.qin, cfg.qout, cfg.st, cfg.g
  local b = wire.base(cfg.slot)
  local c = counters(st, b)
  local tracing = trace.on
  local waiting, next_seq, last_seq, seen = {}, 1, 0, {}
  local group, gn, gindex = {}, 0, 0

  local function emit(seq, lo, items, n, ix)
    local t0 = tracing and now()
    local out, oix, m = {}, {}, 0
    for k = 1, n do
      gn = gn + 1
      group[gn] = items[k]
      if gn == 1 then gindex = ix and ix[k] or lo + k - 1 end
      if gn == size then
        m = m + 1
        out[m], oix[m] = group, gindex
        group, gn = {}, 0
      end
    end
    c[1], c[2] = c[1] + n, c[2] + m
    if tracing then obs.chunk(cfg.name, t0, seq, n, ix and ix[1] or lo, cfg.flow_ph, cfg.flow_base) end
    put_timed(qout, pack_chunk(seq, lo, out, m, oix), c)
  end

  while true do
    local t = now()
    local msg, why = qin:get()
    c[6] = c[6] + (now() - t)
    if why then break end
    local seq, lo, n, items, ix = unpack_chunk(msg)
    if seq > last_seq then last_seq = seq end
    if seen[seq] or seq < next_seq then
      -- a copy of a chunk sent again (see corral.pipeline_flow's send_again)
    elseif cfg.ordered then
      waiting[seq] = { lo, items, n, ix }
      while waiting[next_seq] do
        local w = waiting[next_seq]
        waiting[next_seq] = nil
        emit(next_seq, w[1], w[2], w[3], w[4])
        next_seq = next_seq + 1
      end
    else
      seen[seq] = true
      emit(seq, lo, items, n, ix)
    end
    store(st, b, c)
  end
  -- chunks behind a gap that never filled (a chunk lost with a killed worker)
  local rest = {}
  for seq in pairs(waiting) do rest[#rest + 1] = seq end
  tsort(rest)
  for _, seq in ipairs(rest) do
    local w = waiting[seq]
    emit(seq, w[1], w[2], w[3], w[4])
  end
  if gn > 0 then
    c[2] = c[2] + 1
    put_timed(qout, pack_chunk(last_seq + 1, 0, { group }, 1, { gindex }), c)
  end
  store(st, b, c)
  cfg.inbox:put(pack_fin(g, cfg.slot))
end

-- ---- producers -----------------------------------------------------------------

-- The body of a producer: runs cfg.fn(emit, cfg.wid), or (cfg.queue)
-- passes on the items of a Queue until it is closed and drained. Emitted
-- items go on in chunks of up to cfg.chunk.value items, or as they are
-- once FLUSH_TIME passed since the last chunk went; each chunk waits for
-- a credit (the parent's reorder window) and takes the next seq and source
-- positions under cfg.lock.
function M.produce_main(cfg)
  core._ignore_sigint()
  local qout, chunk, credits, lock, seqc, idxc = cfg.qout, cfg.chunk, cfg.credits, cfg.lock, cfg.seqc, cfg.idxc
  local st, b = cfg.st, wire.base(cfg.slot)
  local c = counters(st, b)
  local buf, n, flushed_at = {}, 0, 0

  local function flush()
    if n == 0 then return end
    local t = now()
    credits:acquire()
    lock:acquire()
    local seq = seqc:add(1)
    local lo = idxc:add(n) - n + 1
    local msg = pack_chunk(seq, lo, buf, n)
    qout:put(msg) -- under the lock: seqs enter the queue in order
    lock:release()
    c[7] = c[7] + (now() - t)
    c[2] = c[2] + n
    buf, n = {}, 0
    store(st, b, c)
    flushed_at = now()
  end

  -- A slow emitter's item goes at once; a fast one's wait to fill a chunk
  -- for at most FLUSH_TIME.
  local function emit(v)
    if v == nil then return end
    n = n + 1
    buf[n] = v
    if n >= chunk.value or now() - flushed_at >= FLUSH_TIME then flush() end
  end

  if cfg.queue then
    local q = cfg.queue
    while true do
      local t = now()
      local v, why = q:get(n > 0 and FLUSH_TIME or nil)
      c[6] = c[6] + (now() - t)
      if why == "closed" then break end
      if why == "timeout" then flush() else emit(v) end
    end
    flush()
  else
    local t0 = now()
    local ok, e = xpcall(cfg.fn, traceback, emit, cfg.wid)
    c[5] = c[5] + (now() - t0)
    local okf, fe = pcall(flush)
    if not ok or not okf then
      local err = ok and (iserror(fe) and fe or newerror("EncodeError", tostring(fe), {})) or remote_error(e)
      err.stage = cfg.name
      c[3] = c[3] + 1
      cfg.inbox:put(pack_err(0, 0, err))
    end
  end
  store(st, b, c)
  cfg.inbox:put(pack_fin(0, cfg.slot))
end

return M
