-- corral.pipeline_flow: a pipeline while it runs, as its parent sees it.
--
--   * Every stage has its input queue (bounded, in chunks of items, see
--     corral.pipeline_wire) and its workers, daemon Processes; the last
--     stage's workers put their chunks on the parent's inbox, where every
--     other message for the parent (errors, partial accumulators, FIN) goes
--     too, so the parent waits on one queue. Items never pass through the
--     parent between stages.
--   * The parent feeds the source (an array or an iterator) into the first
--     queue, or starts producer processes that do. At most a window of
--     items is on its way: the parent counts the items it fed against those
--     that came out in order (producers take a Semaphore's credit for each
--     chunk, which the parent gives back), so memory stays bounded whatever
--     a slow item holds back.
--   * End of stream: once the source is exhausted (every producer said FIN)
--     the parent closes the first queue; a worker that finds its input
--     closed and drained passes everything on and says FIN; once every
--     worker of a stage did, the parent closes the next queue.
--   * Deaths: a dead worker's `held` queue has the chunks it took and did
--     not pass on, and its slots the position of the item it was running.
--     That item fails with WorkerLost (or Timeout, when the parent killed
--     the worker for its time limit), or is tried again; a replacement
--     worker starts with the held chunks. The parent drops a chunk whose
--     seq it already has (a worker killed right after passing it on).
local _, core = ...
local mp = require "corral"
local wire = require "corral.pipeline_wire"
local worker = require "corral.pipeline_worker"
local progress = require "corral.progress"
local obs = require "corral.trace_pipeline"
local trace = obs.trace

local type, pairs, ipairs, error, pcall, tostring, setmetatable = type, pairs, ipairs, error, pcall, tostring,
  setmetatable
local floor, huge, min, max, ceil = math.floor, math.huge, math.min, math.max, math.ceil
local tmove, tremove, tsort = table.move, table.remove, table.sort
local now, newerror, iserror = core.time, core._newerror, core.iserror
local pack_chunk, unpack_chunk, kind_of = wire.pack_chunk, wire.unpack_chunk, wire.kind
local CHUNK, ERR, FIN, PARTIAL, KICK = wire.CHUNK, wire.ERR, wire.FIN, wire.PARTIAL, wire.KICK
local unpack = core._unpack

local CHUNK_MAX = 512     -- most items in a chunk
local QUEUE_CHUNKS = 16   -- most chunks in a queue
local CHUNK_TIME = 0.001  -- a chunk is sized to take about this long in the slowest stage
local SLICE = 0.05        -- longest single wait: deaths are looked for at least this often
local FEED_POLL = 0.002   -- how long the parent waits for room in the first queue at a time
local CHECK_EVERY = 0.02  -- how often the parent looks at its workers while items flow
local KILL_POLL = 0.005   -- how soon to look again for a worker killed for its time limit
local SERVE_TIME = 0.005  -- longest a serve of a pipeline started in the background takes messages in

local Flow = {}
Flow.__index = Flow

-- ---- starting --------------------------------------------------------------------

local function how_it_ended(code)
  return (code and code < 0) and ("was killed by signal " .. -code) or ("exited with status " .. tostring(code))
end

-- A new flow for pipeline spec p (corral.pipeline's checked description).
local function new(p)
  local ctx = p.opts.context or mp
  local stages = p.stages
  local S = #stages
  -- chunks of up to a quarter of maxsize; deep queues (in chunks), so that
  -- small chunks of slow items keep every worker fed: the window, not the
  -- queues, bounds the items on their way
  local chunk_max = min(CHUNK_MAX, max(1, p.opts.maxsize // 4))
  local qcap = QUEUE_CHUNKS
  local nworkers, nslots = 0, 0
  local src = p.source
  local producers = src.kind == "produce" and src.workers or (src.kind == "queue" and 1 or 0)
  for _, s in ipairs(stages) do nworkers = nworkers + s.workers end
  nslots = nworkers + producers
  local ordered = true
  for _, s in ipairs(stages) do if not s.ordered then ordered = false end end
  -- the reorder window: in source items when the parent feeds the source,
  -- in chunks (credits of a Semaphore) when producers do
  local window_items = 2 * p.opts.maxsize * (S + 1)
  local window = max(4, window_items // chunk_max) + 2 * nworkers
  local self = setmetatable({
    p = p, ctx = ctx, S = S, stages = stages, ordered = ordered, qcap = qcap,
    chunk_max = chunk_max,
    q = {}, inbox = mp.Queue(2 * qcap + nslots),
    st = mp.RawArray("d", wire.SLOTS * max(nslots, 1)),
    chunk = mp.RawValue("q", 1), credits = mp.Semaphore(window), window = window,
    window_items = window_items, settled = 0, sizes = {},
    seqc = mp.RawValue("q", 0), idxc = mp.RawValue("q", 0), lock = mp.Lock(),
    workers = {},          -- slot -> worker record
    producers = {},        -- slots of producers
    seq = 0, next_index = 1, pending = nil, src_done = false,
    next_out = 1, waiting = {}, seen_low = 0, seen = {}, -- order and duplicates at the output
    out = {}, out_head = 1, out_tail = 0,                 -- items ready for the consumer
    errors = {}, tries = {}, acc = nil, have_acc = false,
    inflight = {}, refeed = {}, -- source chunks not out yet (seq -> message); chunks to send again
    out_closed = false, done = false, t0 = now(), last_check = 0, fed = 0,
    state = "running",     -- then "done", "failed" (an error stopped it) or "stopped"
    pid = core.getpid(),   -- the process whose flow it is
    replaced = 0,          -- workers replaced after they died
    last_workers = {},     -- slot -> worker record, once released (the final stats)
    defer = false,         -- stopping does not join: the engine's loop says when the processes ended
  }, Flow)
  for g = 1, S do self.q[g] = mp.Queue(qcap) end
  obs.flow_new(self)
  local reduces = S > 0 and stages[S].kind == "reduce"
  -- a reduce pipeline's output is its accumulator: its chunks need no order
  if reduces then self.ordered = false end
  self.keep_inflight = S > 0 and (src.kind == "list" or src.kind == "iter")
  if reduces then
    self.owners, self.owners_lock = mp.RawArray("q", wire.OWNER_RING), mp.Lock()
    self.next_wid = 0
  end
  self.q[S + 1] = self.inbox
  local slot = 0
  for g, s in ipairs(stages) do
    s.g, s.slots, s.nfin, s.closed_in = g, {}, 0, false
    s.lost, s.pretries = 0, 0
    if s.kind == "reduce" then s.init_msg = core._pack(s.init, "init") end
    if s.timeout then self.timed = true end
    for k = 1, s.workers do
      slot = slot + 1
      s.slots[k] = slot
    end
  end
  for k = 1, producers do
    slot = slot + 1
    self.producers[k] = slot
  end
  self.src_list, self.src_pos = src.list, 1
  self.src_iter = src.iter
  if p.opts.progress then self.board = progress.board() end
  -- a function that cannot travel to its workers raises here, naming its stage
  for _, s in ipairs(stages) do
    if s.fn then core._check(s.fn, ("the function of stage '%s'"):format(s.name)) end
  end
  if src.fn then core._check(src.fn, ("the function of source '%s'"):format(src.name)) end
  local ok, err = pcall(function()
    for _, s in ipairs(stages) do
      for k = 1, s.workers do self:start_worker(s, s.slots[k], k, nil) end
    end
    for k, sl in ipairs(self.producers) do self:start_producer(sl, k) end
  end)
  if not ok then
    self:cancel("failed")
    error(err, 0)
  end
  if trace.on then obs.queues(self) end
  return self
end

function Flow:start_worker(s, slot, k, rescue)
  local batch = s.kind == "batch"
  local held = not batch and mp.Queue() or nil
  for _, msg in ipairs(rescue or {}) do held:put(msg) end -- see corral.pipeline_worker
  local cfg = { kind = s.kind, fn = s.fn, name = s.name, g = s.g, slot = slot, qin = self.q[s.g],
                qout = self.q[s.g + 1], inbox = self.inbox, held = held, st = self.st, retries = s.retries,
                timed = s.timeout ~= nil, rescue = rescue, init = s.init_msg, size = s.size,
                ordered = self.ordered_upto(self, s.g) }
  cfg.flow_ph, cfg.flow_base = obs.chunk_flow(self, s.g)
  if s.kind == "reduce" then
    self.next_wid = self.next_wid + 1
    cfg.owners, cfg.owners_lock, cfg.wid = self.owners, self.owners_lock, self.next_wid
  end
  local proc = self.ctx.Process{ target = batch and worker.batch_main or worker.stage_main, args = { cfg },
                                 daemon = true, name = ("%s-%d"):format(s.name, k) }
  proc._track = obs.track(self, s.name, k)
  self.workers[slot] = { proc = proc, held = held, slot = slot, stage = s, k = k, wid = cfg.wid }
  proc:start()
  self.workers[slot].pid = proc.pid
end

-- Whether every stage before stage g keeps source order.
function Flow:ordered_upto(g)
  for i = 1, g - 1 do if not self.stages[i].ordered then return false end end
  return true
end

function Flow:start_producer(slot, k)
  local src = self.p.source
  local cfg = { fn = src.fn, queue = src.queue, wid = k, name = src.name, slot = slot, qout = self.q[1],
                inbox = self.inbox, st = self.st, chunk = self.chunk, credits = self.credits, lock = self.lock,
                seqc = self.seqc, idxc = self.idxc }
  local proc = self.ctx.Process{ target = worker.produce_main, args = { cfg }, daemon = true,
                                 name = ("%s-%d"):format(src.name, k) }
  proc._track = obs.track(self, src.name, k)
  self.workers[slot] = { proc = proc, slot = slot, producer = true, k = k }
  proc:start()
  self.workers[slot].pid = proc.pid
end

-- ---- failing and stopping ----------------------------------------------------------

-- An item's error: with on_error = "raise" the pipeline stops and it is
-- raised; with "collect" it is kept in stats.errors.
function Flow:item_failed(err)
  if self.p.opts.on_error == "collect" then
    self.errors[#self.errors + 1] = err
    return
  end
  self:cancel("failed")
  error(err, 0)
end

-- Stops every process now (state: "stopped", or "failed" when an error
-- stops it) and releases everything; later calls only release what a
-- deferred stop left (self.defer: the processes are killed, not joined).
function Flow:cancel(state)
  if not self.stopped then
    self.stopped = true
    self.done = true
    if self.state == "running" then self.state = state or "stopped" end
    for _, w in pairs(self.workers) do
      if not w.gone then pcall(w.proc.kill, w.proc) end
    end
  end
  if not self.defer then self:release() end
end

-- Whether every process has ended (releasing then waits for none).
function Flow:all_ended()
  for _, w in pairs(self.workers) do
    if not w.gone and w.proc.exitcode == nil then return false end
  end
  return true
end

-- Joins every process (they have ended or been killed), closes every
-- queue and stops the watch, if any; once.
function Flow:release()
  if self.released then return end
  self.released = true
  self.stopped = true
  -- the watch stays referenced: this may run inside its own callback
  if self.watch then self.watch:stop() end
  for slot, w in pairs(self.workers) do
    pcall(w.proc.join, w.proc)
    pcall(w.proc.close, w.proc)
    if w.held then w.held:close() end
    self.last_workers[slot] = w
    self.workers[slot] = nil
  end
  for g = 1, self.S do self.q[g]:close() end
  self.inbox:close()
  if self.board then self.board:finish(self:view()) end
  self.finished_at = self.finished_at or now()
end

-- ---- the source ----------------------------------------------------------------

-- Up to want items from an array or iterator source; n = 0 at its end.
function Flow:pull(want)
  local items, n = {}, 0
  local list = self.src_list
  if list then
    local i = self.src_pos
    local last = min(#list, i + want - 1)
    if last >= i then tmove(list, i, last, 1, items) end
    n = max(last - i + 1, 0)
    self.src_pos = last + 1
    if last >= #list then self.src_done = true end
    return items, n
  end
  local iter = self.src_iter
  while n < want do
    local ok, v = pcall(iter)
    if not ok then
      self.src_done = true
      local err = iserror(v) and v or newerror("RemoteError", "the source iterator raised: " .. tostring(v), {})
      err.stage, err.index = self.p.source.name, self.next_index + n
      self.source_error = err
      break
    end
    if v == nil then
      self.src_done = true
      break
    end
    n = n + 1
    items[n] = v
  end
  return items, n
end

-- The chunk message of items; an item that cannot travel fails with its
-- EncodeError, stage = the source's name.
function Flow:pack_source(items, n)
  return wire.pack_chunk_or_drop(self.seq, self.next_index, items, n, nil, false, function(index, err)
    err.stage, err.index, err.pid = self.p.source.name, index, nil
    self:item_failed(err)
  end)
end

-- Feeds the first queue while the window and the queue have room; waits
-- up to `wait` seconds for room for a chunk already cut.
function Flow:feed(wait)
  local src = self.p.source
  if src.kind ~= "list" and src.kind ~= "iter" then return end
  while not self.fed_all do
    if not self.pending and #self.refeed > 0 then
      self.pending = tremove(self.refeed, 1)
    end
    if not self.pending then
      if self.src_done or self.fed - self.settled >= self.window_items then break end
      local items, n = self:pull(self.chunk.value)
      if self.source_error then
        local err = self.source_error
        self.source_error = nil
        self:item_failed(err)
        if n == 0 then break end
      elseif n == 0 then
        self.src_done = true
        break
      end
      self.seq = self.seq + 1
      self.pending = self:pack_source(items, n)
      if self.keep_inflight then self.inflight[self.seq] = self.pending end
      self.sizes[self.seq] = n
      self.next_index = self.next_index + n
      self.fed = self.fed + n
    end
    if self.S == 0 then
      local msg = self.pending
      self.pending = nil
      self:on_chunk(msg)
    elseif self.q[1]:put(self.pending, wait or 0) then
      self.pending = nil
    else
      return
    end
    wait = 0
  end
  if self.src_done and not self.pending and not self.fed_all then
    self.fed_all = true
    self:source_ended()
  end
end

-- The source has nothing more: the first stage's input closes.
function Flow:source_ended()
  if self.S == 0 then
    self.out_closed = true
  else
    self:close_input(1)
  end
end

function Flow:close_input(g)
  local s = self.stages[g]
  if s.closed_in then return end
  s.closed_in = true
  self.q[g]:close()
  self:stage_maybe_done(s)
end

-- Once every worker of stage s said FIN (its input being closed), the next
-- stage's input closes, or the output is complete.
function Flow:stage_maybe_done(s)
  if not s.closed_in or s.nfin < s.workers then return end
  if s.g == self.S then self.out_closed = true else self:close_input(s.g + 1) end
end

-- ---- what comes out --------------------------------------------------------------

function Flow:deliver(items, n)
  local t = self.out_tail
  tmove(items, 1, n, t + 1, self.out)
  self.out_tail = t + n
end

-- Whether seq arrived before (a chunk passed on twice by a worker killed
-- right after passing it on); marks it seen.
function Flow:duplicate(seq)
  if seq <= self.seen_low or self.seen[seq] then return true end
  self.seen[seq] = true
  local low, seen = self.seen_low, self.seen
  while seen[low + 1] do
    low = low + 1
    seen[low] = nil
  end
  self.seen_low = low
  return false
end

function Flow:on_chunk(msg)
  local seq, _, n, items = unpack_chunk(msg)
  if self:duplicate(seq) then return end
  self.inflight[seq] = nil
  if not self.ordered then
    self:deliver(items, n)
    self:settle(seq)
    return
  end
  local waiting = self.waiting
  waiting[seq] = { items, n }
  self.nwaiting = (self.nwaiting or 0) + 1
  if self.maybe_gap and self.nwaiting >= self.window // 2 and not waiting[self.next_out] then
    -- a chunk lost with a killed producer-fed worker: its gap is skipped
    -- rather than let the window run dry
    local first = huge
    for s in pairs(waiting) do first = min(first, s) end
    self.next_out = first
  end
  while waiting[self.next_out] do
    local c = waiting[self.next_out]
    waiting[self.next_out] = nil
    self.nwaiting = self.nwaiting - 1
    self.next_out = self.next_out + 1
    self:deliver(c[1], c[2])
    self:settle(self.next_out - 1)
  end
end

-- Chunk seq came out: its room in the window is free again.
function Flow:settle(seq)
  local n = self.sizes[seq]
  if n then
    self.sizes[seq] = nil
    self.settled = self.settled + n
  elseif self.producers[1] then
    self.credits:release()
  end
end

-- At the end: what waits for a seq that never came (none, unless a worker
-- was killed before it recorded a chunk), in order.
function Flow:flush_waiting()
  local seqs = {}
  for seq in pairs(self.waiting) do seqs[#seqs + 1] = seq end
  tsort(seqs)
  for _, seq in ipairs(seqs) do
    local c = self.waiting[seq]
    self:deliver(c[1], c[2])
  end
  self.waiting = {}
end

function Flow:on_message(msg)
  local k = kind_of(msg)
  if k == CHUNK then return self:on_chunk(msg) end
  if k == KICK then return end
  if k == ERR then
    local _, _, err = wire.unpack_err(msg)
    return self:item_failed(err)
  end
  if k == FIN then
    local g, slot = wire.unpack_fin(msg)
    local w = self.workers[slot]
    if w and not w.fin then
      w.fin = true
      if g == 0 then
        self.nfin_src = (self.nfin_src or 0) + 1
        if self.nfin_src == #self.producers then self:source_ended() end
      else
        local s = self.stages[g]
        s.nfin = s.nfin + 1
        self:stage_maybe_done(s)
      end
    end
    return
  end
  if k == PARTIAL then
    local g, acc = wire.unpack_partial(msg)
    if not self.have_acc then
      self.acc, self.have_acc = acc, true
    else
      local ok, merged = pcall(self.stages[g].merge, self.acc, acc)
      if not ok then -- it stops the pipeline, as an item's error does
        self:cancel("failed")
        error(merged, 0)
      end
      self.acc = merged
    end
  end
end

-- Reads every message already in the inbox.
function Flow:drain()
  while true do
    local msg, why = self.inbox:get(0)
    if why then return end
    self:on_message(msg)
  end
end

-- ---- deaths and time limits ------------------------------------------------------

-- The error of the item a worker of stage s was running when it ended.
-- A worker that died holding nothing may have died in the instant between
-- taking a chunk and recording it: every source chunk not out yet goes
-- again (the parent and the batch worker drop the copies they already have).
-- Once the source is exhausted no chunk goes again: a lost one then leaves
-- a gap, skipped at the end of stream.
function Flow:send_again()
  local seqs = {}
  for seq in pairs(self.inflight) do seqs[#seqs + 1] = seq end
  tsort(seqs)
  local pending = self.pending
  self.refeed, self.pending = {}, nil
  for i, seq in ipairs(seqs) do self.refeed[i] = self.inflight[seq] end
  if pending then self.refeed[#self.refeed + 1] = pending end
  if self.fed_all then self.refeed = {} end -- the first queue is closed: the end of stream comes anyway
end

local function lost_error(w, s, index)
  local code = w.proc.exitcode
  local err
  if w.timed_out then
    err = newerror("Timeout", ("item %d ran past the time limit of %gs of stage '%s'; worker pid %d was killed")
      :format(index, s.timeout, s.name, w.pid), { pid = w.pid })
  else
    err = newerror("WorkerLost", ("worker pid %d of stage '%s' %s while working on item %d"):format(
      w.pid, s.name, how_it_ended(code), index), { pid = w.pid, exitcode = code })
  end
  err.stage, err.index = s.name, index
  return err
end

-- Worker w of stage s ended without FIN: the item it was running fails or
-- goes again; a replacement takes over what it held.
function Flow:worker_died(w, s)
  local held = {}
  while true do
    local msg, why = w.held:get(0)
    if why then break end
    held[#held + 1] = msg
  end
  local b = wire.base(w.slot)
  local pos = floor(self.st[b + wire.POS])
  self.st[b + wire.POS], self.st[b + wire.SINCE] = 0, 0
  -- the held chunk POS is about
  local cur = floor(self.st[b + wire.CUR])
  local at
  for j, msg in ipairs(held) do
    if wire.chunk_seq(msg) == cur then at = j break end
  end
  if s.kind == "reduce" then
    local owners = self.owners
    self.owners_lock:acquire()
    if pos == wire.P_SHIPPED then -- what it claimed is in the accumulator it sent
      for _, msg in ipairs(held) do wire.mark_done_if(owners, wire.chunk_seq(msg), w.wid) end
    end
    wire.forget(owners, w.wid)
    self.owners_lock:release()
  end
  if pos == wire.P_SHIPPED then
    held, at = {}, nil
  elseif pos == wire.P_PASSED and s.kind ~= "reduce" and at then
    tremove(held, at) -- its output is on the next queue
    at = nil
  end
  if pos == wire.P_TAKING then
    -- it may have died with a chunk taken and not yet in `held`
    if self.keep_inflight then self:send_again() else self.maybe_gap = true end
  end
  w.held:close()
  w.proc:close()
  w.gone = true
  self.workers[w.slot] = nil
  local failed
  if pos ~= 0 and at then
    local seq, lo, n, items, ix = unpack_chunk(held[at])
    -- somewhere in a chunk run fast: the replacement runs it carefully and
    -- finds the item, if the death is the item's doing
    if pos == wire.P_FAST and n == 1 then pos = 1 end
    if pos < 0 then pos = 0 end
    local index = pos > 0 and wire.index_of(lo, ix, pos)
    local key = pos > 0 and s.g .. ":" .. index
    local tries = key and self.tries[key] or 0
    if pos == 0 then
      -- nothing to blame: every held chunk goes again whole
    elseif tries < s.retries then
      self.tries[key] = tries + 1
      s.pretries = s.pretries + 1
    else
      s.lost = s.lost + 1
      failed = lost_error(w, s, index)
      local keep, kix, j = {}, {}, 0
      for k = 1, n do
        if k ~= pos then
          j = j + 1
          keep[j], kix[j] = items[k], wire.index_of(lo, ix, k)
        end
      end
      held[at] = pack_chunk(seq, lo, keep, j, kix)
    end
  end
  self:start_worker(s, w.slot, w.k, held)
  self.replaced = self.replaced + 1
  if trace.on then
    obs.worker_died(w)
    if failed then obs.item_lost(w, failed) end
    obs.worker_replaced(self, w.slot, w.pid)
  end
  if failed then self:item_failed(failed) end
end

-- A producer or the batch worker that ended without FIN: what it had not
-- passed on cannot be known, so the pipeline fails.
function Flow:essential_died(w)
  local name = w.producer and self.p.source.name or w.stage.name
  local code = w.proc.exitcode
  local err = newerror("WorkerLost", ("%s pid %d of '%s' %s before it passed everything on"):format(
    w.producer and "producer" or "worker", w.pid, name, how_it_ended(code)), { pid = w.pid, exitcode = code })
  err.stage = name
  if trace.on then obs.worker_died(w) end
  self:cancel("failed")
  error(err, 0)
end

function Flow:check_workers()
  core._service()
  local dead
  for _, w in pairs(self.workers) do
    if not w.fin and not w.proc:is_alive() then
      dead = dead or {}
      dead[#dead + 1] = w
    end
  end
  if not dead then return end
  self:drain() -- a FIN it sent before it ended is not a death
  tsort(dead, function(a, b) return a.slot < b.slot end)
  for _, w in ipairs(dead) do
    if w.fin then
      -- it finished
    elseif w.producer or w.stage.kind == "batch" then
      self:essential_died(w)
    else
      self:worker_died(w, w.stage)
    end
  end
end

-- Kills workers whose item ran past its stage's time limit; returns when
-- to look again.
function Flow:check_deadlines()
  local soonest = huge
  local st, t = self.st, now()
  for _, w in pairs(self.workers) do
    local s = w.stage
    if s and s.timeout and not w.fin and not w.gone then
      local b = wire.base(w.slot)
      local pos = st[b + wire.POS]
      if w.timed_out then
        soonest = min(soonest, t + KILL_POLL)
      elseif pos > 0 then
        local deadline = st[b + wire.START] + s.timeout
        if t >= deadline and st[b + wire.POS] == pos then
          w.timed_out = true
          if trace.on then obs.timeout_kill(w, s.timeout) end
          w.proc:kill()
          soonest = min(soonest, t + KILL_POLL)
        else
          soonest = min(soonest, deadline)
        end
      else
        soonest = min(soonest, t + s.timeout)
      end
    end
  end
  return soonest
end

-- ---- the parent's wait ---------------------------------------------------------------

-- Sizes chunks to take about CHUNK_TIME in the slowest stage (1 item
-- until every stage has measured one).
function Flow:size_chunks()
  local st, worst = self.st, 0
  for _, s in ipairs(self.stages) do
    local items, busy = 0, 0
    for _, slot in ipairs(s.slots) do
      local b = wire.base(slot)
      items, busy = items + st[b + wire.IN], busy + st[b + wire.BUSY]
    end
    if items == 0 and s.kind ~= "batch" then return end
    if items > 0 then worst = max(worst, busy / items) end
  end
  local c = worst > 0 and floor(CHUNK_TIME / worst) or self.chunk_max
  self.chunk.value = max(1, min(self.chunk_max, c))
  self.sized = true
end

-- One round that does not wait: feeds the first queue, takes in the
-- inbox's messages (until one gives the consumer an item, with until_item;
-- until `deadline`, if given), and ends the stream once the output is
-- complete. Returns whether it took in a message.
function Flow:pump(until_item, deadline)
  self:feed(0)
  local got = false
  while true do
    local msg, why = self.inbox:get(0)
    if why then break end
    self:on_message(msg)
    got = true
    if until_item and self.out_head <= self.out_tail then break end
    if deadline and now() >= deadline then break end
  end
  if got and not self.sized then self:size_chunks() end
  if self.out_closed then self:end_of_stream() end
  return got
end

-- The output is complete: what is left comes out, and the processes are
-- released (unless deferred: they end by themselves, having said FIN).
function Flow:end_of_stream()
  if trace.on then obs.queues(self) end
  self:drain()
  self:flush_waiting()
  self.done = true
  self.state = "done"
  if not self.defer then self:release() end
end

-- Every CHECK_EVERY (or now, with force) while it runs: dead workers,
-- time limits, chunk sizes, the progress board, the trace's queue counters.
function Flow:look_around(force)
  if self.done then return end
  local t = now()
  if not force and t - self.last_check < CHECK_EVERY then return end
  self.last_check = t
  self:check_workers()
  if self.timed then self:check_deadlines() end
  self:size_chunks()
  if self.board then self.board:draw(self:view()) end
  if trace.on then obs.queues(self) end
end

-- Whether a worker ended without FIN (cheap: no system call).
function Flow:any_ended()
  for _, w in pairs(self.workers) do
    if not w.fin and not w.gone and w.proc.exitcode ~= nil then return true end
  end
  return false
end

-- Runs the pipeline until there is an item for the consumer (true), it
-- ended (false), or `deadline` passed first (nil; no deadline: never).
function Flow:step(deadline)
  while self.out_head > self.out_tail do
    if self.done then return false end
    local got = self:pump(true)
    if not self.done and not got then
      local t = now()
      local wake = min(t + SLICE, self.timed and self:check_deadlines() or huge, deadline or huge)
      if self.pending and self.S > 0 then
        self:feed(min(FEED_POLL, max(wake - t, 0)))
      else
        local msg, why = self.inbox:get(max(wake - t, 0))
        if not why then self:on_message(msg) end
      end
    end
    self:look_around()
    if deadline and self.out_head > self.out_tail and not self.done and now() >= deadline then return nil end
  end
  return true
end

-- ---- in the background ---------------------------------------------------------------
--
-- A pipeline started in the background (corral.pipeline's start) is
-- served by a watch on its inbox (core._watch, as a Pool's outbox): from
-- every corral wait and a host's uv_run, whenever a message arrives or a
-- child of the process ends. Its flow defers releasing: a serve never
-- waits for a process; the workers' ends ring the watch again.

-- Starts serving from the engine's loop: serve() runs at the next wait.
function Flow:watch_inbox(serve)
  self.defer = true
  self.watch = core._watch(self.inbox, serve)
  self.inbox:put(wire.pack_kick(), 0) -- the first serve needs no worker's message
end

-- The watch is quiet while the caller drives the flow itself (step).
function Flow:hold(on)
  self.defer = not on
  if self.watch then self.watch:pause(on) end
end

-- One serve: a round of pump (messages taken in for at most SERVE_TIME:
-- what is left rings again), the first queue fed again, and the workers
-- looked at when a serve found nothing (a child ended), one ended, or
-- CHECK_EVERY passed. Time limits are kept at those moments only.
function Flow:serve()
  if self.done then return end
  local got = self:pump(false, now() + SERVE_TIME)
  if self.done then return end
  self:feed(0)
  self:look_around(not got or self:any_ended())
end

-- The next item for the consumer, or nil at the end.
function Flow:next_item()
  if self.out_head > self.out_tail and not self:step() then return nil end
  local i = self.out_head
  local v = self.out[i]
  self.out[i] = nil
  self.out_head = i + 1
  return v, true
end

-- Moves every item ready for the consumer to dest[n+1], dest[n+2]...
-- after running the pipeline until there is one; returns the new n, or
-- nil at the end.
function Flow:take_all(dest, n)
  if self.out_head > self.out_tail and not self:step() then return nil end
  local head, tail = self.out_head, self.out_tail
  tmove(self.out, head, tail, n + 1, dest)
  self.out, self.out_head, self.out_tail = {}, 1, 0
  return n + tail - head + 1
end

-- ---- what the pipeline did ---------------------------------------------------------

-- Per stage: its counters, summed over its workers' slots.
function Flow:stage_counts(s)
  local st = self.st
  local c = { name = s.name, workers = s.workers, items_in = 0, items_out = 0, errors = s.lost,
              retries = s.pretries, lost = s.lost, busy = 0, wait_in = 0, wait_out = 0 }
  for _, slot in ipairs(s.slots) do
    local b = wire.base(slot)
    c.items_in = c.items_in + floor(st[b + wire.IN])
    c.items_out = c.items_out + floor(st[b + wire.OUT])
    c.errors = c.errors + floor(st[b + wire.ERRS])
    c.retries = c.retries + floor(st[b + wire.RETRIES])
    c.busy = c.busy + st[b + wire.BUSY]
    c.wait_in = c.wait_in + st[b + wire.WAIT_IN]
    c.wait_out = c.wait_out + st[b + wire.WAIT_OUT]
  end
  return c
end

-- Per worker process, by stage (the source's producers first): its
-- stage's name, k, pid, items_done (items it ran; a producer's: it
-- emitted), busy (the fraction of the time since the start its slot
-- spent on items, the chunk it runs now included), item_age (seconds it
-- has run its current chunk of items, nil between chunks) and alive.
-- Once released, the last workers, not alive.
function Flow:worker_stats()
  local st, t = self.st, self.finished_at or now()
  local up = max(t - self.t0, 1e-9)
  local recs = self.released and self.last_workers or self.workers
  local out = {}
  local function add(slot, name)
    local w = recs[slot]
    if not w then return end
    local b = wire.base(slot)
    local since = self.released and 0 or st[b + wire.SINCE]
    local busy = st[b + wire.BUSY] + (since > 0 and t - since or 0)
    out[#out + 1] = { stage = name, k = w.k, pid = w.pid, alive = not w.gone and w.proc.exitcode == nil,
                      items_done = floor(w.producer and st[b + wire.OUT] or st[b + wire.IN]),
                      busy = min(1, busy / up), item_age = since > 0 and t - since or nil }
  end
  for _, slot in ipairs(self.producers) do add(slot, self.p.source.name) end
  for _, s in ipairs(self.stages) do
    for _, slot in ipairs(s.slots) do add(slot, s.name) end
  end
  return out
end

-- The live view the progress board draws: one line per stage (items
-- out, rate in, its input queue's fill, how busy its workers are), the
-- busiest marked as the bottleneck.
function Flow:view()
  local t = max((self.finished_at or now()) - self.t0, 1e-9)
  local rows, worst, worst_at = {}, -1, 0
  for g, s in ipairs(self.stages) do
    local c = self:stage_counts(s)
    local util = c.busy / (s.workers * t)
    if util > worst then worst, worst_at = util, g end
    rows[g] = { c, util, self.stopped and "-" or ("%d/%d"):format(self.q[g]:qsize(), self.qcap) }
  end
  local lines = {}
  for g, r in ipairs(rows) do
    local c, util, fill = r[1], r[2], r[3]
    lines[g] = ("%-12s %10d out %11.1f/s  queue %-7s busy %3d%%%s"):format(c.name, c.items_out, c.items_in / t,
      fill, floor(util * 100 + 0.5), g == worst_at and "  <- bottleneck" or "")
  end
  return lines
end

return { new = new }
