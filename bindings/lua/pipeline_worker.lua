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

local type, xpcall, pcall, tostring = type, xpcall, pcall, tostring
local now, newerror, iserror, getpid, check = core.time, core._newerror, core.iserror, core.getpid, core._check
local pack_chunk, unpack_chunk, pack_err, pack_fin, pack_partial =
  wire.pack_chunk, wire.unpack_chunk, wire.pack_err, wire.pack_fin, wire.pack_partial
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

-- The chunk message of out[1..m]; an item that cannot travel fails with
-- its EncodeError (through fail) and is left out.
local function pack_output(seq, lo, out, m, oix, consecutive, fail)
  local ok, msg = pcall(pack_chunk, seq, lo, out, m, (not consecutive) and oix or nil)
  if ok then return msg end
  local keep, kix, j = {}, {}, 0
  for k = 1, m do
    local okk, e = pcall(check, out[k], "item")
    if okk then
      j = j + 1
      keep[j], kix[j] = out[k], oix[k]
    else
      fail(oix[k], iserror(e) and newerror(e.kind, e.message, { pid = getpid() }) or
        newerror("EncodeError", tostring(e), { pid = getpid() }))
    end
  end
  return pack_chunk(seq, lo, keep, j, kix)
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
  local POS, START = b + wire.POS, b + wire.START
  local retries, timed = cfg.retries or 0, cfg.timed
  local reduce, is_map, is_filter = kind == "reduce", kind == "map", kind == "filter"
  local c = counters(st, b)
  local acc = reduce and unpack(cfg.init) or nil
  local nheld, shipped_at = 0, now()

  local function fail(index, err)
    c[3] = c[3] + 1
    inbox:put(pack_err(g, index, item_error(err, name, index)))
  end

  -- fn on one item, tried again up to `retries` times when it raises.
  local function call(item)
    local tries = 0
    while true do
      local ok, v
      if reduce then ok, v = xpcall(fn, traceback, acc, item) else ok, v = xpcall(fn, traceback, item) end
      if ok then return true, v end
      if tries >= retries then return false, v end
      tries = tries + 1
      c[4] = c[4] + 1
    end
  end

  local function process(msg)
    local seq, lo, n, items, ix = unpack_chunk(msg)
    local out, oix, m = {}, {}, 0
    local t0 = now()
    for k = 1, n do
      local index = ix and ix[k] or lo + k - 1
      if timed then st[START] = now() end
      st[POS] = k
      local ok, v = call(items[k])
      if not ok then
        fail(index, remote_error(v))
      elseif is_map then
        if v ~= nil then m = m + 1; out[m], oix[m] = v, index end
      elseif is_filter then
        if v then m = m + 1; out[m], oix[m] = items[k], index end
      elseif reduce then
        acc = v
      elseif type(v) == "table" then -- flat_map
        for j = 1, #v do m = m + 1; out[m], oix[m] = v[j], index end
      elseif v ~= nil then
        fail(index, newerror("ValueError", "flat_map's function must return an array table or nil, got "
          .. type(v), { pid = getpid() }))
      end
    end
    c[5] = c[5] + (now() - t0)
    c[1], c[2] = c[1] + n, c[2] + m
    st[POS] = -1
    -- reduce passes on an empty chunk: what the parent counts to let more in
    local reply = pack_output(seq, lo, out, m, oix, ix == nil and m == n, fail)
    put_timed(qout, reply, c)
    st[POS] = 0
  end

  local function ship()
    if nheld == 0 then return end
    inbox:put(pack_partial(g, acc))
    acc = unpack(cfg.init)
    for _ = 1, nheld do held:get(0) end
    nheld, shipped_at = 0, now()
  end

  local function take(msg)
    held:put(msg)
    nheld = nheld + 1
    process(msg)
    if not reduce then
      held:get(0)
      nheld = 0
    elseif nheld >= SHIP_CHUNKS or now() - shipped_at >= SHIP_TIME then
      ship()
    end
    store(st, b, c)
  end

  for _, msg in ipairs(cfg.rescue or {}) do take(msg) end
  while true do
    local t = now()
    local msg, why = qin:get()
    c[6] = c[6] + (now() - t)
    if why then break end
    take(msg)
  end
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
  local waiting, next_seq, last_seq = {}, 1, 0
  local group, gn, gindex = {}, 0, 0

  local function emit(seq, lo, items, n, ix)
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
    put_timed(qout, pack_chunk(seq, lo, out, m, oix), c)
  end

  while true do
    local t = now()
    local msg, why = qin:get()
    c[6] = c[6] + (now() - t)
    if why then break end
    local seq, lo, n, items, ix = unpack_chunk(msg)
    if seq > last_seq then last_seq = seq end
    if cfg.ordered then
      waiting[seq] = { lo, items, n, ix }
      while waiting[next_seq] do
        local w = waiting[next_seq]
        waiting[next_seq] = nil
        emit(next_seq, w[1], w[2], w[3], w[4])
        next_seq = next_seq + 1
      end
    else
      emit(seq, lo, items, n, ix)
    end
    store(st, b, c)
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
-- after FLUSH_TIME; each chunk waits for a credit (the parent's reorder
-- window) and takes the next seq and source positions under cfg.lock.
function M.produce_main(cfg)
  core._ignore_sigint()
  local qout, chunk, credits, lock, seqc, idxc = cfg.qout, cfg.chunk, cfg.credits, cfg.lock, cfg.seqc, cfg.idxc
  local st, b = cfg.st, wire.base(cfg.slot)
  local c = counters(st, b)
  local buf, n, first_at = {}, 0, 0

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
  end

  local function emit(v)
    if v == nil then return end
    n = n + 1
    buf[n] = v
    if n == 1 then first_at = now() end
    if n >= chunk.value or now() - first_at >= FLUSH_TIME then flush() end
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
