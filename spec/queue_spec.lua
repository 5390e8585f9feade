-- Queue, JoinableQueue, SimpleQueue: order, sizes, bounds, timeouts,
-- values, large messages, close, handles in messages, killed producers and
-- consumers, bad input. Runs under both start methods.
local H = require "spec.helper"
local mp = H.mp
local testing = require "corral.testing"
-- Process targets use only upvalues: under spawn they are encoded, and the
-- spec file's environment is busted's, not the child's globals.
local error, tostring = error, tostring
local function check(cond, msg) if not cond then error(msg or "check failed", 2) end end

-- Starts a process running f(...) and returns it.
local start = H.start

local join_ok = H.join_ok

-- Starts a process whose next put or get (`where`) on q, made by
-- op(q, ...), stops for ever in its middle; returns it once it has.
local function park_in(where, q, op, ...)
  local before = testing.queue_parked(q)
  local p = start(function(where, op, q, ...)
    testing.queue_park(where)
    op(q, ...)
  end, where, op, q, ...)
  assert.is_true(H.wait_until(function() return testing.queue_parked(q) > before end, 10))
  return p
end

-- The same, then kills it there and reaps it.
local function kill_in(where, q, op, ...)
  local p = park_in(where, q, op, ...)
  p:kill()
  assert.is_true(p:join(10))
end

local function put(q, v) q:put(v) end
local function get(q) q:get() end

local kind_of = H.kind_of

describe("Queue (" .. H.method .. ")", function()
  after_each(function() H.assert_no_children() end)

  it("keeps the order of one producer", function()
    local q = mp.Queue()
    local p = start(function(q, n) for i = 1, n do q:put(i) end end, q, 2000)
    for i = 1, 2000 do assert.are.equal(i, q:get(10)) end
    join_ok(p)
    assert.is_true(q:empty())
  end)

  it("has an exact qsize right after each put and get", function()
    for _, q in ipairs { mp.Queue(), mp.Queue(5), mp.JoinableQueue(), mp.SimpleQueue() } do
      assert.are.equal(0, q:qsize())
      assert.is_true(q:empty())
      q:put("a")
      assert.are.equal(1, q:qsize())
      q:put("b")
      assert.are.equal(2, q:qsize())
      assert.is_false(q:empty())
      assert.are.equal("a", q:get())
      assert.are.equal(1, q:qsize())
      assert.are.equal("b", q:get())
      assert.are.equal(0, q:qsize())
      assert.is_true(q:empty())
    end
  end)

  it("moves 100000 items from 4 producers to 4 consumers, none lost or doubled", function()
    local q, results = mp.Queue(1000), mp.Queue()
    local per = 25000
    local consumers, producers = {}, {}
    for _ = 1, 4 do
      consumers[#consumers + 1] = start(function(q, results)
        local sum, count = 0, 0
        for v in q:iter() do sum = sum + v; count = count + 1 end
        results:put({ sum, count })
      end, q, results)
    end
    for k = 0, 3 do
      producers[#producers + 1] = start(function(q, base, n)
        for i = base + 1, base + n do q:put(i) end
      end, q, k * per, per)
    end
    for _, p in ipairs(producers) do join_ok(p) end
    q:close()
    local sum, count = 0, 0
    for _ = 1, 4 do
      local r = results:get(30)
      sum, count = sum + r[1], count + r[2]
    end
    for _, p in ipairs(consumers) do join_ok(p) end
    local n = 4 * per
    assert.are.equal(n, count)
    assert.are.equal(n * (n + 1) // 2, sum)
    assert.are.equal(0, q:qsize())
  end)

  it("blocks a bounded put until a reader makes room", function()
    local q, got = mp.Queue(2), mp.Queue()
    q:put(1); q:put(2)
    assert.is_true(q:full())
    local p = start(function(q, got)
      -- take one item only once the queue is full (the parent is about to block)
      while not q:full() do mp.sleep(0.001) end
      got:put(q:get(10))
    end, q, got)
    assert.is_true(q:put(3, 10)) -- returns only after the child took 1
    assert.are.equal(1, got:get(10))
    join_ok(p)
    assert.are.equal(2, q:get(0))
    assert.are.equal(3, q:get(0))
  end)

  it("returns the documented values on every timeout path", function()
    local q = mp.Queue(1)
    local v, why = q:get(0)
    assert.is_nil(v); assert.are.equal("timeout", why)
    v, why = q:get(0.05)
    assert.is_nil(v); assert.are.equal("timeout", why)
    assert.are.equal("Empty", (kind_of(q.get_nowait, q)))
    assert.is_true(q:put("x", 0))
    local ok, why2 = q:put("y", 0)
    assert.is_false(ok); assert.are.equal("full", why2)
    ok, why2 = q:put("y", 0.05)
    assert.is_false(ok); assert.are.equal("full", why2)
    assert.are.equal("Full", (kind_of(q.put_nowait, q, "y")))
    assert.are.equal(1, q:qsize())
    assert.are.equal("x", q:get_nowait())
    q:put_nowait("z")
    assert.are.equal("z", q:get(0))
    local j = mp.JoinableQueue()
    j:put(1)
    assert.is_false(j:join(0))
    assert.is_false(j:join(0.05))
    assert.are.equal(1, j:get())
    j:task_done()
    assert.is_true(j:join(0))
    local s = mp.SimpleQueue()
    v, why = s:get(0.01)
    assert.is_nil(v); assert.are.equal("timeout", why)
  end)

  it("carries nil and rich values across processes", function()
    local q, back = mp.Queue(), mp.Queue()
    local p = start(function(q, back)
      for _ = 1, 6 do
        local v, why = q:get(10)
        check(why == nil, why)
        back:put(v)
      end
    end, q, back)
    local bin = {}
    for i = 0, 255 do bin[#bin + 1] = string.char(i) end
    bin = table.concat(bin):rep(3)
    local cyc = { name = "c", list = { 1, 2.5, true } }
    cyc.self = cyc
    cyc.list.parent = cyc
    q:put(nil)
    q:put(false)
    q:put(bin)
    q:put(cyc)
    q:put(math.mininteger)
    q:put({ [1.5] = "x", nested = { { {} } } })
    local v, why = back:get(10)
    assert.is_nil(v); assert.is_nil(why)
    assert.is_false(back:get(10))
    assert.are.equal(bin, back:get(10))
    local c = back:get(10)
    assert.are.equal(c, c.self)
    assert.are.equal(c, c.list.parent)
    assert.are.same({ 1, 2.5, true }, { c.list[1], c.list[2], c.list[3] })
    assert.are.equal(math.mininteger, back:get(10))
    local t = back:get(10)
    assert.are.equal("x", t[1.5])
    assert.are.equal("table", type(t.nested[1][1]))
    join_ok(p)
  end)

  it("carries strings of every size class intact, across processes", function()
    local q = mp.Queue()
    local sizes = { 0, 31, 32, 47, 48, 49, 4095, 4096, 4097, 100000, 3000000 }
    local p = start(function()
      for _, n in ipairs(sizes) do
        local s = {}
        for i = 1, n do s[i] = string.char((i * 7 + n) % 256) end
        q:put(table.concat(s))
      end
    end)
    for _, n in ipairs(sizes) do
      local got = q:get(30)
      assert.are.equal(n, #got)
      local s = {}
      for i = 1, n do s[i] = string.char((i * 7 + n) % 256) end
      assert.is_true(got == table.concat(s), "string of " .. n .. " bytes changed on the way")
    end
    join_ok(p)
  end)

  it("carries a 256 MiB string", function()
    local q = mp.Queue(1)
    local n = 256 * 1024 * 1024
    local p = start(function(q, n)
      local s = ("0123456789abcdef"):rep(n // 16)
      check(q:put(s, 60))
    end, q, n)
    local s = q:get(60)
    join_ok(p)
    assert.are.equal(n, #s)
    assert.are.equal("0123456789abcdef", s:sub(1, 16))
    assert.are.equal("0123456789abcdef", s:sub(-16))
    assert.are.equal("89ab", s:sub(n // 2 + 9, n // 2 + 12))
  end)

  it("joins a JoinableQueue once every item had its task_done", function()
    local q = mp.JoinableQueue()
    for i = 1, 5 do q:put(i) end
    local p = start(function(q)
      for _ = 1, 5 do q:get(10); q:task_done() end
    end, q)
    assert.is_true(q:join(30))
    join_ok(p)
    local kind, msg = kind_of(q.task_done, q)
    assert.are.equal("ValueError", kind)
    assert.matches("too many times", msg)
    assert.is_true(q:join(0))
    q:put("x")
    assert.is_false(q:join(0.02))
    q:get(); q:task_done()
    assert.is_true(q:join())
  end)

  it("drains after close, then iter ends and get says closed", function()
    local q = mp.Queue()
    for i = 1, 3 do q:put(i) end
    q:put(nil)
    q:close()
    q:close()
    local ok, why = q:put(4)
    assert.is_false(ok); assert.are.equal("closed", why)
    assert.are.equal("Closed", (kind_of(q.put_nowait, q, 4)))
    local got = {}
    for item in q:iter() do got[#got + 1] = item end
    assert.are.same({ 1, 2, 3 }, got)
    local v
    v, why = q:get()
    assert.is_nil(v); assert.are.equal("closed", why)
    assert.are.equal("Closed", (kind_of(q.get_nowait, q)))
    -- a reader in another process waiting on an empty queue sees the close
    local q2, out = mp.Queue(), mp.Queue()
    local p = start(function(q2, out)
      local n = 0
      for _ in q2:iter() do n = n + 1 end
      out:put(n)
    end, q2, out)
    q2:put("a"); q2:put("b")
    q2:close()
    assert.are.equal(2, out:get(10))
    join_ok(p)
  end)

  it("sends a queue, and other handles, through a queue", function()
    local q, back, inner = mp.Queue(), mp.Queue(), mp.JoinableQueue()
    local p = start(function(q, back)
      local got = q:get(10)
      check(got.q:get(10) == "pending")
      got.q:task_done()
      back:put("done " .. tostring(got.q))
    end, q, back)
    inner:put("pending")
    q:put({ q = inner })
    assert.is_true(inner:join(10)) -- the child's task_done reached our queue
    assert.matches("^done JoinableQueue", back:get(10))
    join_ok(p)
    if mp.Lock then
      local lock = mp.Lock()
      q:put(lock)
      local l2 = q:get(1)
      assert.is_true(l2:acquire(0))
      assert.is_false(lock:acquire(0))
      l2:release()
    end
  end)

  it("survives a producer killed in the middle of a put", function()
    for _, item in ipairs { "small", ("big"):rep(1000) } do
      local q = mp.Queue(3)
      q:put("before")
      kill_in("put", q, put, item)
      assert.are.equal("before", q:get(10))
      for i = 1, 7 do -- more than a lap of the ring
        assert.is_true(q:put(i, 10))
        assert.are.equal(i, q:get(10))
      end
      local v, why = q:get(0.05)
      assert.is_nil(v); assert.are.equal("timeout", why)
      assert.are.equal(0, q:qsize())
    end
  end)

  it("survives a consumer killed in the middle of a get", function()
    local q = mp.Queue(1)
    q:put({ "precious", 42 })
    kill_in("get", q, get)
    -- the message the dead reader held is delivered whole to the next one
    assert.are.same({ "precious", 42 }, q:get(10))
    assert.is_true(q:put("next", 10))
    assert.are.equal("next", q:get(10))
  end)

  it("keeps the handles of a long message whose consumer was killed after decoding it, for the next one", function()
    -- The dead reader's handles were its own: reaping it gives back what
    -- it took, never the message's, which the next reader gets whole.
    local RING = 8192 -- an unbounded queue's ring: past it, the overflow list
    for _, case in ipairs{ { q = mp.Queue(1), fill = 0 }, { q = mp.Queue(), fill = RING } } do
      local q = case.q
      for i = 1, case.fill do q:put(i) end
      local inner = mp.Queue()
      inner:put("kept")
      collectgarbage()
      collectgarbage() -- what earlier tests left for the collector goes first
      local objects = mp.arena_stats().objects
      q:put({ inner, ("x"):rep(1000) })
      for _ = 1, case.fill do q:get(10) end
      kill_in("get", q, get)
      local v = q:get(10)
      assert.are.equal(1000, #v[2])
      inner = nil -- this process's first handle goes: v[1] must still hold the queue
      collectgarbage()
      collectgarbage()
      assert.is_true(v[1]:put("more", 10))
      assert.are.equal("kept", v[1]:get(10))
      assert.are.equal("more", v[1]:get(10))
      v = nil
      assert.is_true(H.wait_until(function()
        collectgarbage()
        return mp.arena_stats().objects == objects - 1
      end, 10), "the inner queue is freed once its last handle is")
    end
  end)

  it("frees the slot of a producer killed in a put without waiting for a reader", function()
    -- the only slot of a Queue(1): no reader ever comes
    local q = mp.Queue(1)
    kill_in("put", q, put, "torn")
    assert.are.equal(0, q:qsize())
    assert.is_false(q:full())
    assert.is_true(q:empty())
    assert.is_true(q:put("whole", 0))
    assert.are.equal("whole", q:get(0))
    -- a producer-only program keeps the whole bound, in order
    q = mp.JoinableQueue(3)
    kill_in("put", q, put, "torn")
    for i = 1, 3 do assert.is_true(q:put(i, 0)) end
    assert.are.equal(3, q:qsize())
    assert.is_true(q:full())
    local ok, why = q:put(4, 0)
    assert.is_false(ok); assert.are.equal("full", why)
    for i = 1, 3 do
      assert.are.equal(i, q:get(0))
      q:task_done()
    end
    assert.is_true(q:join(0)) -- the torn put is not owed a task_done
  end)

  it("delivers the item of a consumer killed in a get before the items after it", function()
    for _, maxsize in ipairs { 0, 4 } do
      local q = mp.Queue(maxsize)
      local items = { ("first"):rep(100), 2, "three", { 4 } }
      for _, v in ipairs(items) do q:put(v) end
      kill_in("get", q, get)
      assert.are.equal(4, q:qsize()) -- the item it held is still in the queue
      assert.are.equal(maxsize > 0, q:full())
      assert.are.same(items[1], q:get(0))
      assert.is_true(q:put("five", 0))
      items[5] = "five"
      for i = 2, 5 do assert.are.same(items[i], q:get(0)) end
      assert.is_true(q:empty())
    end
  end)

  it("keeps each producer's order when a consumer is killed among others", function()
    -- a consumer parked holding the oldest item, others taking the rest:
    -- once it is killed, its item comes before anything put afterwards
    local q, out = mp.Queue(), mp.Queue()
    q:put(0)
    local parked = park_in("get", q, get)
    local reader = start(function(q, out)
      local got = {}
      for v in q:iter() do got[#got + 1] = v end
      out:put(got)
    end, q, out)
    for i = 1, 50 do q:put(i) end
    local drained = H.wait_until(function() return q:qsize() == 0 end, 10) -- but the parked item
    parked:kill()
    assert.is_true(parked:join(10))
    for i = 51, 100 do q:put(i) end
    q:close()
    local got = out:get(30)
    join_ok(reader)
    assert.is_true(drained, "the reader did not take 1..50")
    assert.are.equal(101, #got)
    assert.are.equal(0, got[51]) -- after 1..50, which went by while it was alive
    for i = 1, 50 do assert.are.equal(i, got[i]) end
    for i = 51, 100 do assert.are.equal(i, got[i + 1]) end
  end)

  it("rejects bad input", function()
    assert.are.equal("ValueError", (kind_of(mp.Queue, -1)))
    assert.are.equal("ValueError", (kind_of(mp.Queue, "x")))
    assert.are.equal("ValueError", (kind_of(mp.Queue, 1.5)))
    assert.are.equal("ValueError", (kind_of(mp.JoinableQueue, -3)))
    local q = mp.Queue()
    q:put("keep")
    local kind, msg = kind_of(q.put, q, { f = coroutine.create(print) })
    assert.are.equal("EncodeError", kind)
    assert.matches("item", msg)
    assert.are.equal(1, q:qsize()) -- unchanged
    assert.are.equal("ValueError", (kind_of(q.get, q, -1)))
    assert.are.equal("ValueError", (kind_of(q.put, q, 1, "soon")))
    assert.has_error(function() q.put(42, 1) end)
    assert.has_error(function() mp.Queue().task_done(q) end)
    assert.are.equal("keep", q:get(0))
    local saved
    do
      local q2 <close> = mp.Queue()
      saved = q2
      assert.are.equal("Queue(size=0, maxsize=0)", tostring(q2))
    end
    kind, msg = kind_of(saved.get, saved)
    assert.are.equal("Closed", kind)
    assert.matches("attempt to use a closed Queue", msg)
    assert.are.equal("Queue (closed)", tostring(saved))
    assert.matches("^JoinableQueue", tostring(mp.JoinableQueue()))
    assert.matches("^SimpleQueue", tostring(mp.SimpleQueue()))
  end)

  it("prints its size, maxsize and whether it is closed", function()
    local q = mp.Queue(3)
    q:put(1); q:put(2)
    assert.are.equal("Queue(size=2, maxsize=3)", tostring(q))
    q:close()
    assert.are.equal("Queue(size=2, maxsize=3, closed)", tostring(q))
    assert.are.equal("JoinableQueue(size=0, maxsize=0)", tostring(mp.JoinableQueue()))
  end)
end)
