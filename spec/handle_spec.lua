-- Handles: the one mechanism every shared-object type uses. Each handle
-- holds a reference recorded in its process's ledger, so a child's
-- references come back when it ends, however it ends, and an object is
-- freed when its last holder is gone (mp.arena_stats() shows it). Runs
-- under both start methods (CORRAL_START_METHOD).
local H = require "spec.helper"
local mp = H.mp

-- The arena's use once everything this test made is gone.
local function settled()
  collectgarbage()
  collectgarbage()
  return mp.arena_stats()
end

local function assert_back_to(start, what)
  local now = H.wait_until(function()
    local s = settled()
    return s.objects == start.objects and s.in_use == start.in_use and s
  end, 10) or settled()
  assert.are.equal(start.objects, now.objects, what .. ": objects alive")
  assert.are.equal(start.in_use, now.in_use, what .. ": bytes in use")
  assert.are.equal(start.held, now.held, what .. ": references this process holds")
end

-- Cycles of make, share with a child, drop. The plain run goes past the
-- arena's 4096 object slots (a leak of one slot a cycle exhausts it);
-- under the sanitizers, where each process start costs tens of
-- milliseconds more, a tenth: any leak still shows, the arena must come
-- back exactly.
local QUEUE_CYCLES = H.sanitized and 500 or 5000
local POOL_CYCLES = H.sanitized and 200 or 2000

-- Releases a handle the way a to-be-closed variable does (a Manager's
-- proxies have no close method: it would hide a key named "close").
local function release(o) getmetatable(o).__close(o) end

-- One of each kind of handle, for a child to hold.
-- A new handle to the same object, as a message delivers one.
local function copy(h)
  local q = mp.SimpleQueue()
  q:put(h)
  return (q:get(5))
end

-- One of each kind of handle, for a child to hold. The Manager's
-- containers live until it shuts down (its registry holds them), so the
-- same two come each time, as new handles.
local function one_of_each(containers)
  local a, b = mp.Pipe()
  return { mp.Queue(), mp.JoinableQueue(4), mp.SimpleQueue(), a, b, mp.Lock(), mp.RLock(),
           mp.Semaphore(2), mp.Event(), mp.Condition(), mp.Barrier(2), mp.Value("i", 1),
           mp.Array("d", 3), copy(containers[1]), copy(containers[2]) }
end

describe("Handles (" .. H.method .. ")", function()
  after_each(function()
    H.cleanup()
    H.assert_no_children()
  end)

  it("reports the arena's use", function()
    local s0 = settled()
    for _, k in ipairs{ "size", "in_use", "blocks", "objects", "held" } do
      assert.are.equal("integer", math.type(s0[k]), k)
    end
    local q = mp.Queue()
    local s1 = mp.arena_stats()
    assert.are.equal(s0.objects + 1, s1.objects)
    assert.are.equal(s0.held + 1, s1.held)
    assert.is_true(s1.in_use > s0.in_use)
    q:close()
    q = nil
    assert_back_to(s0, "a dropped Queue")
  end)

  it(("gives back %d cycles of a Queue that lived while a child ran"):format(QUEUE_CYCLES), function()
    local s0 = settled()
    for _ = 1, QUEUE_CYCLES do
      local q = mp.Queue()
      local p = mp.Process{ target = function() end }
      p:start()
      assert.is_true(p:join(30))
      p:close()
      q = nil
      if _ % 500 == 0 then collectgarbage() end
    end
    assert_back_to(s0, QUEUE_CYCLES .. " Queue and Process cycles")
  end)

  it(("gives back %d cycles of a Pool that mapped 100 items"):format(POOL_CYCLES), function()
    local items = {}
    for i = 1, 100 do items[i] = i end
    local s0 = settled()
    for _ = 1, POOL_CYCLES do
      local pool = mp.Pool(2)
      local r = pool:map(function(x) return x + 1 end, items)
      assert.are.equal(101, r[100])
      pool:close()
      pool:join()
      if _ % 200 == 0 then collectgarbage() end
    end
    assert_back_to(s0, POOL_CYCLES .. " Pool cycles")
  end)

  it("gives back what a child held when it exits, errors or is SIGKILLed", function()
    local m <close> = mp.Manager()
    local containers = { m:list({ 1, 2 }), m:dict({ k = "v" }) }
    local s0 = settled()
    for _, ending in ipairs{ "exit", "error", "kill" } do
      do
        local objs = one_of_each(containers)
        local ready = mp.Event()
        local p = mp.Process{ target = function(how, ev, t)
          ev:set()
          if how == "exit" then os.exit(0) end
          if how == "error" then error("on purpose") end
          mp.sleep(60)
          return #t
        end, args = { ending, ready, objs } }
        p:start()
        assert.is_true(ready:wait(30))
        if ending == "kill" then p:kill() end
        assert.is_true(p:join(30))
        for _, o in ipairs(objs) do release(o) end
        ready:close()
      end
      assert_back_to(s0, "a child that ended by " .. ending)
    end
  end)

  it("frees what the messages of a dropped queue hold, small or large, in the ring or overflowing", function()
    local s0 = settled()
    do
      local q = mp.Queue()
      local small, large = mp.Queue(2), mp.Pipe()
      q:put(small)                                     -- inline in its slot
      q:put({ large, string.rep("x", 1000) })          -- in a block of its own
      local inner = mp.Queue()
      inner:put(mp.Lock())                             -- a queue inside a queue
      q:put(inner)
      for i = 1, 9000 do q:put(i == 9000 and mp.Event() or i) end -- past the ring: overflow
      small, large, inner = nil, nil, nil
    end
    assert_back_to(s0, "a queue dropped with handles in its messages")
  end)

  it("keeps an object alive while a child holds it after the parent let go", function()
    settled()
    local q, back = mp.Queue(), mp.Queue()
    local go = mp.Event()
    local p = H.start(function(qq, bb, ev)
      assert(ev:wait(30))
      bb:put(qq:get(30))
    end, q, back, go)
    q:put("still here")
    local objects = mp.arena_stats().objects
    q = nil -- the parent's handle goes (not a close: that ends the queue for all)
    collectgarbage()
    collectgarbage()
    assert.are.equal(objects, mp.arena_stats().objects) -- the child's handle keeps it
    go:set()
    assert.are.equal("still here", back:get(30))
    H.join_ok(p)
  end)

  it("frees an object a forked or spawned child closed while the parent still holds it only once both let go", function()
    local s0 = settled()
    local v = mp.Value("i", 7)
    local p = H.start(function(val) val:close() end, v)
    H.join_ok(p)
    assert.are.equal(7, v.value) -- the parent's handle still works
    v.value = 8
    v:close()
    assert_back_to(s0, "a Value closed in both")
  end)

  it("checks every type the same way: a wrong type and a closed handle", function()
    local m <close> = mp.Manager()
    local lock = mp.Lock()
    for _, o in ipairs(one_of_each({ m:list(), m:dict() })) do
      local name = getmetatable(o).__name:match("^corral%.(%w+)$")
      release(o)
      assert.matches("%(closed%)$", tostring(o))
      local ok, err = pcall(function()
        if o.get then return o:get(0) end
        if o.recv then return o:recv(0) end
        if o.acquire then return o:acquire(0) end
        if o.wait then return o:wait(0) end
        if o.append then return o:append(1) end
        if o.keys then return o:keys() end
        return o.value
      end)
      assert.is_false(ok, name)
      assert.is_true(mp.iserror(err, "Closed"), name .. ": " .. tostring(err))
      assert.matches("attempt to use a closed " .. name, err.message, 1, true)
    end
    local ok, err = pcall(mp.Queue().get, lock)
    assert.is_false(ok)
    assert.matches("Queue expected, got corral.Lock", tostring(err), 1, true)
    ok, err = pcall(lock.acquire, mp.Event())
    assert.is_false(ok)
    assert.matches("Lock expected", tostring(err), 1, true)
  end)

  it("closes a Queue for every process when a to-be-closed variable leaves scope", function()
    local q = mp.Queue()
    local p = H.start(function(qq)
      local item, why = qq:get(30)
      os.exit(item == nil and why == "closed" and 0 or 1)
    end, q)
    do
      local scoped <close> = q
    end
    H.join_ok(p)
    assert.matches("%(closed%)$", tostring(q))
  end)

  it("lets a far end see the end of stream once a SIGKILLed holder is reaped", function()
    local a, b = mp.Pipe()
    local ready = mp.Event()
    local p = H.start(function(ev, held) ev:set(); mp.sleep(60); return held end, ready, b)
    assert.is_true(ready:wait(30))
    b:close() -- only the child holds b now
    p:kill()
    assert.is_true(p:join(30))
    local v, why = a:recv(10)
    assert.is_nil(v)
    assert.are.equal("closed", why)
    local ok, err = pcall(a.send, a, "anyone?")
    assert.is_false(ok)
    assert.is_true(mp.iserror(err, "Closed"))
    a:close()
  end)

  it("gives back the block of a long message whose producer was killed while it waited for room", function()
    local q, ready = mp.Queue(1), mp.Event()
    q:put(1)
    local s0 = settled()
    local p = H.start(function(q, ready, s)
      ready:set()
      q:put(s)
    end, q, ready, string.rep("y", 1000))
    assert.is_true(ready:wait(10))
    assert.is_true(H.wait_until(function() return H.in_futex_wait(p.pid) end, 10), "the producer waits")
    p:kill()
    assert.is_true(p:join(10))
    assert_back_to(s0, "a producer killed in a put of a long message")
    assert.are.equal(1, q:get(5))
    assert.are.equal(0, q:qsize())
  end)

  it("gives back what a spawned child held in its arguments when it is killed before it starts", function()
    local ctx = mp.get_context("spawn")
    local q = mp.Queue()
    local s0 = settled()
    for _ = 1, 10 do
      local p = ctx.Process{ target = function(q, s) q:put(#s) end, args = { q, string.rep("z", 4000) } }
      p:start()
      p:kill()
      assert.is_true(p:join(10))
    end
    assert_back_to(s0, "spawned children killed at their start")
    q:close()
  end)
end)
