-- The chaos run: random SIGKILLs of pool workers, queue producers and
-- queue consumers while work flows, for a bounded time. Not part of the
-- spec suite: tools/test.sh runs it as a stage of its own ("chaos", 20 s
-- of kills unless CHAOS_SECONDS says otherwise), once per start method,
-- with busted:
--   CORRAL_BUILD_DIR=build CORRAL_START_METHOD=fork busted tools/chaos.lua
-- CHAOS_SECONDS (default 60) bounds the time spent killing; winding down
-- and the checks add a few seconds. CHAOS_SEED=N replays a schedule of
-- kills (the seed is printed first; the timing of the processes is not
-- replayed, only the choices). CHAOS_KILL=worker|producer|consumer kills
-- only that kind of process (to find which kind a leak comes from).
--
-- The run is a series of rounds. In each, producers put numbered items on
-- a fresh Queue (bounded or not) and consumers take them, while a fresh
-- Pool runs a steady flow of small tasks; between kills the parent waits
-- for a random amount of work to get through (with a timeout: a stall is a
-- failure, not a hang). A killed producer or consumer is replaced; a Pool
-- replaces its own workers. At the end of a round the producers are told
-- to stop, the queue is closed and drained, the pool closed and joined,
-- and every item is accounted for:
--   - a pool task returned its result, or failed with WorkerLost, and no
--     more tasks failed than workers were killed;
--   - every item a producer put was taken exactly once, except: the item
--     a killed producer was putting (it may or may not have gone in), and
--     at most one item per killed consumer: the one it had taken but not
--     yet recorded (a consumer killed between `get` and its own
--     bookkeeping loses that item: delivery is at most once);
--   - no item was taken twice, and none that was never put.
-- Each round prints one line (# chaos ...), and the run a total. Once
-- everything is closed and collected, the arena's bytes and objects, this
-- process's fds and its children are back where they started.
local H = require "spec.helper"
local mp = H.mp
local testing = require "corral.testing"

local SECONDS = tonumber(os.getenv("CHAOS_SECONDS")) or 60
local SEED = tonumber(os.getenv("CHAOS_SEED")) or os.time()
local PRODUCERS, CONSUMERS, WORKERS = 2, 2, 3
local IDS = 1000000 -- item numbers per producer slot and round (a round ends once all are put)
local TASKS_AHEAD = 24 -- pool tasks kept submitted and not yet done
local STALL = 30    -- seconds without any progress that count as a hang
local ONLY = ({ worker = 1, producer = 2, consumer = 3 })[os.getenv("CHAOS_KILL") or ""]
if os.getenv("CHAOS_KILL") and not ONLY then
  error("CHAOS_KILL must be worker, producer or consumer, not " .. os.getenv("CHAOS_KILL"))
end

local function say(fmt, ...)
  io.write(("# chaos (%s): " .. fmt .. "\n"):format(H.method, ...))
  io.flush()
end

-- The arena's use once everything made so far is gone.
local function settled()
  collectgarbage()
  collectgarbage()
  return mp.arena_stats()
end

-- ---- what the children run (only locals and arguments: under spawn a
-- function travels with its upvalues)

-- Puts items first..last, recording each once put; stops when told to.
-- One item in four is a string of up to 2 KB (a block of its own in the
-- queue's memory), the others numbers (a slot).
local function producer(q, prog, slot, first, last, stop)
  for id = first, last do
    if stop:is_set() then return end
    local item = id
    if id % 4 == 0 then item = id .. (":"):rep(id % 2000) end
    local ok = q:put(item, 30)
    if not ok then os.exit(3) end -- no room for 30 s: a stall
    prog[slot] = id
  end
end

-- Takes items until the queue is closed and drained; records each.
local function consumer(q, seen, delivered)
  while true do
    local v, why = q:get(30)
    if why == "closed" then return end
    if why then os.exit(4) end -- nothing for 30 s: a stall
    -- the bookkeeping: a kill between get and here loses v
    local id = v
    if type(v) == "string" then id = tonumber(v:match("^%d+")) end
    local c = seen[id]
    seen[id] = c + 1
    delivered:add(1)
  end
end

local function task(x)
  local t = mp.time() + 0.0005
  while mp.time() < t do end
  return x * 2, mp.getpid()
end

-- ---- one round

local Round = {}
Round.__index = Round

local function new_round(n, totals)
  local r = setmetatable({
    n = n, totals = totals,
    q = mp.Queue(({ 0, 4, 64 })[math.random(3)]),
    seen = mp.RawArray("B", PRODUCERS * IDS),
    prog = mp.RawArray("q", PRODUCERS),
    delivered = mp.Value("q", 0),
    stop = mp.Event(),
    pool = mp.Pool(WORKERS),
    producers = {}, consumers = {},
    ambiguous = {},          -- items a killed producer may have put
    results = {}, rhead = 1, -- pool tasks, in submission order; oldest not seen done
    kills = { worker = 0, producer = 0, consumer = 0 },
  }, Round)
  for slot = 1, PRODUCERS do r:start_producer(slot, (slot - 1) * IDS + 1) end
  for i = 1, CONSUMERS do r:start_consumer(i) end
  return r
end

function Round:start_producer(slot, first)
  self.prog[slot] = first - 1
  self.producers[slot] = H.start(producer, self.q, self.prog, slot, first, slot * IDS, self.stop)
end

function Round:start_consumer(i)
  self.consumers[i] = H.start(consumer, self.q, self.seen, self.delivered)
end

function Round:top_up()
  while #self.results - self.rhead + 1 < TASKS_AHEAD do
    local x = #self.results + 1
    self.results[x] = self.pool:apply_async(task, { x })
  end
end

-- Lets the pool work for up to dt seconds: waits inside it (its results
-- come in only then) on its oldest task not yet seen done.
function Round:pump(dt)
  if self.results[self.rhead]:wait(dt) then
    self.rhead = self.rhead + 1
    self:top_up()
  end
end

-- Waits (inside the pool) for the next k tasks to be done.
function Round:let_pool_work(k)
  for _ = 1, k do
    local r = self.results[self.rhead]
    assert(r:wait(STALL), ("round %d: pool task %d not done in %d s"):format(self.n, self.rhead, STALL))
    self.rhead = self.rhead + 1
    self:top_up()
  end
end

function Round:producing()
  for _, p in ipairs(self.producers) do if p and p:is_alive() then return true end end
  return false
end

-- Waits for k more items to be taken off the queue (or for the producers
-- to have put all their items), letting the pool work meanwhile.
function Round:let_queue_work(k)
  local want, deadline = self.delivered.value + k, mp.time() + STALL
  while self.delivered.value < want and self:producing() do
    assert(mp.time() < deadline,
      ("round %d: no %d items taken in %d s (%d so far)"):format(self.n, k, STALL, self.delivered.value))
    self:pump(0.002)
  end
end

local function kill(p)
  p:kill()
  assert(p:join(STALL), "a killed process did not end")
  assert(p.exitcode == -9 or p.exitcode == 0, "exit code " .. tostring(p.exitcode))
  p:close()
end

function Round:kill_worker()
  local workers = {}
  for _, p in ipairs(mp.active_children()) do
    if p.name:match("^PoolWorker") then workers[#workers + 1] = p end
  end
  if #workers == 0 then return end
  local w = workers[math.random(#workers)]
  local ok, err = pcall(w.kill, w)
  -- (a worker that had died may be closed by its pool while the list is made)
  if not ok then assert(mp.iserror(err, "Closed"), err); return end
  self.kills.worker = self.kills.worker + 1
end

function Round:kill_producer()
  local live = {}
  for slot, p in ipairs(self.producers) do if p then live[#live + 1] = slot end end
  if #live == 0 then return end
  local slot = live[math.random(#live)]
  kill(self.producers[slot])
  local at = self.prog[slot] + 1 -- the item it may have been putting
  self.kills.producer = self.kills.producer + 1
  if at <= slot * IDS then
    self.ambiguous[at] = true
    self:start_producer(slot, at + 1)
  else
    self.producers[slot] = false -- it had put all its items
  end
end

function Round:kill_consumer()
  local i = math.random(CONSUMERS)
  kill(self.consumers[i])
  self.kills.consumer = self.kills.consumer + 1
  self:start_consumer(i)
end

-- One step: lets a random amount of work through, then kills one process.
function Round:step()
  local what = ONLY or math.random(3)
  if what == 1 then
    self:let_pool_work(math.random(8))
    self:kill_worker()
  else
    self:let_queue_work(math.random(300))
    if what == 2 then self:kill_producer() else self:kill_consumer() end
  end
end

-- Stops the work, closes everything and checks the accounting.
function Round:finish()
  self.stop:set()
  for _, p in ipairs(self.producers) do
    if p then H.join_ok(p, STALL); p:close() end
  end
  self.q:close()
  for _, p in ipairs(self.consumers) do H.join_ok(p, STALL); p:close() end
  -- pool: every task done, or failed with WorkerLost
  local ok, lost = 0, 0
  for x, r in ipairs(self.results) do
    assert(r:wait(STALL), ("round %d: pool task %d not done in %d s"):format(self.n, x, STALL))
    local fine, v = pcall(r.get, r, 0)
    if fine then
      assert(v == 2 * x, ("round %d: task %d returned %s"):format(self.n, x, tostring(v)))
      ok = ok + 1
    else
      assert(mp.iserror(v, "WorkerLost"), ("round %d: task %d failed with %s"):format(self.n, x, tostring(v)))
      lost = lost + 1
    end
  end
  self.pool:close()
  assert(self.pool:join(STALL), "the pool did not end")
  assert(lost <= self.kills.worker, ("round %d: %d tasks lost, %d workers killed"):format(self.n, lost, self.kills.worker))
  -- queue: every item put taken once, but for the documented exceptions
  local taken, missing, amb_in = 0, 0, 0
  for slot = 1, PRODUCERS do
    local last = self.prog[slot]
    for id = (slot - 1) * IDS + 1, slot * IDS do
      local c = self.seen[id]
      assert(c <= 1, ("round %d: item %d taken %d times"):format(self.n, id, c))
      if id > last then
        assert(c == 0, ("round %d: item %d taken, never put"):format(self.n, id))
      elseif c == 1 then
        taken = taken + 1
        if self.ambiguous[id] then amb_in = amb_in + 1 end
      elseif not self.ambiguous[id] then
        missing = missing + 1
      end
    end
  end
  -- (a consumer killed between its two records counted one item less)
  local counted = self.delivered.value
  assert(taken >= counted and taken <= counted + self.kills.consumer,
    ("round %d: %d items recorded, %d counted"):format(self.n, taken, counted))
  assert(missing <= self.kills.consumer,
    ("round %d: %d items lost, only %d consumers killed"):format(self.n, missing, self.kills.consumer))
  local k = self.kills
  say("round %d: %d items taken (%d lost with a killed consumer, %d of %d a killed producer was putting), "
    .. "%d pool tasks (%d WorkerLost); killed %d workers, %d producers, %d consumers",
    self.n, taken, missing, amb_in, k.producer, ok + lost, lost, k.worker, k.producer, k.consumer)
  local t = self.totals
  t.items, t.lost, t.tasks, t.worker_lost = t.items + taken, t.lost + missing, t.tasks + ok + lost, t.worker_lost + lost
  for kind, n in pairs(k) do t.kills[kind] = t.kills[kind] + n end
  t.rounds = t.rounds + 1
end

-- What the run found, for the checks that follow it.
local run = {}

describe("chaos (" .. H.method .. ")", function()
  after_each(function()
    -- after a failure, what a round left running
    for _, p in ipairs(mp.active_children()) do p:kill(); p:join(STALL) end
  end)

  it("accounts for every item under random SIGKILLs, and nothing hangs", function()
    say("seed %d (CHAOS_SEED=%d replays the choices), %s s of kills", SEED, SEED, SECONDS)
    math.randomseed(SEED)
    run.s0 = settled()
    run.blocks0 = {}
    for _, b in ipairs(testing.arena_blocks()) do run.blocks0[b.off] = b.size end
    run.fds = H.count_fds()
    local t0 = mp.time()
    local totals = { rounds = 0, items = 0, lost = 0, tasks = 0, worker_lost = 0,
                     kills = { worker = 0, producer = 0, consumer = 0 } }
    run.totals = totals
    local n = 0
    repeat
      n = n + 1
      local r = new_round(n, totals)
      r:top_up()
      local until_t = math.min(mp.time() + 2 + 6 * math.random(), t0 + SECONDS)
      repeat r:step() until mp.time() >= until_t or not r:producing()
      r:finish()
    until mp.time() - t0 >= SECONDS - 1
    local k = totals.kills
    say("%d rounds in %.0f s: %d items taken (%d lost with a killed consumer), %d pool tasks "
      .. "(%d WorkerLost); %d kills: %d workers, %d producers, %d consumers; seed %d",
      totals.rounds, mp.time() - t0, totals.items, totals.lost, totals.tasks, totals.worker_lost,
      k.worker + k.producer + k.consumer, k.worker, k.producer, k.consumer, SEED)
  end)

  -- Once everything is closed and collected, all is back where it started.
  it("leaves no process behind", function()
    H.assert_no_children()
  end)

  it("leaves no fd open", function()
    local now = H.wait_until(function() return H.count_fds() == run.fds end, 10) and run.fds or H.count_fds()
    assert.are.equal(run.fds, now)
  end)

  -- The blocks allocated now that were not at the start: what a leak is
  -- made of (a queue's message block starts with its link and length,
  -- then the codec's 0xcb).
  local function new_blocks()
    local out, n = {}, 0
    for _, b in ipairs(testing.arena_blocks()) do
      if run.blocks0[b.off] ~= b.size then
        n = n + 1
        if n <= 8 then
          out[#out + 1] = ("\n  block at %d, %d bytes: %s"):format(b.off, b.size,
            (b.head:sub(1, 40):gsub(".", function(c) return ("%02x"):format(c:byte()) end)))
        end
      end
    end
    return n == 0 and "" or ("\n%d blocks more than at the start:%s"):format(n, table.concat(out))
  end

  local function arena_back(field, what)
    local s0 = assert(run.s0, "the run did not start")
    local now = H.wait_until(function()
      local s = settled()
      return s[field] == s0[field] and s
    end, 10) or settled()
    local k = run.totals.kills
    assert(now[field] == s0[field], ("%s: %d at the start, %d now (after %d producers and %d consumers killed)%s")
      :format(what, s0[field], now[field], k.producer, k.consumer, new_blocks()))
  end

  it("gives back every arena object", function() arena_back("objects", "arena objects alive") end)

  it("gives back every arena byte", function() arena_back("in_use", "arena bytes in use") end)
end)
