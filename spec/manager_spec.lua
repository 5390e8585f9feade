-- Manager: shared list, dict and Namespace that any process can change.
-- Many writers at once, every method against Python's results, proxies
-- travelling to children and inside messages, a client killed in the middle
-- of an operation, shutdown, misuse, and the seed's example. Runs under
-- both start methods.
local H = require "spec.helper"
local mp = H.mp
local testing = require "corral.testing"
-- Process targets use only upvalues: under spawn they are encoded, and the
-- spec file's environment is busted's, not the child's globals.
local error, tostring, pcall, type = error, tostring, pcall, type

local start = H.start

local join_ok = H.join_ok

local kind_of = H.kind_of

describe("Manager (" .. H.method .. ")", function()
  after_each(function() H.assert_no_children() end)

  it("gives exactly 40000 items from 4 processes x 10000 appends", function()
    local m <close> = mp.Manager()
    local l = m:list()
    local ps = {}
    for k = 0, 3 do
      ps[#ps + 1] = start(function(l, base)
        for i = base + 1, base + 10000 do l:append(i) end
      end, l, k * 10000)
    end
    for _, p in ipairs(ps) do join_ok(p) end
    assert.are.equal(40000, #l)
    local seen, t = {}, l:totable()
    assert.are.equal(40000, #t)
    for _, v in ipairs(t) do
      assert.is_nil(seen[v])
      seen[v] = true
    end
    for i = 1, 40000 do assert.is_true(seen[i]) end
    -- each producer's own order is kept
    local last = {}
    for _, v in ipairs(t) do
      local k = (v - 1) // 10000
      assert.is_true(v > (last[k] or 0))
      last[k] = v
    end
  end)

  it("takes dict updates from several processes", function()
    local m <close> = mp.Manager()
    local d = m:dict()
    local lock = m:Lock()
    local ps = {}
    for k = 1, 4 do
      ps[#ps + 1] = start(function(d, lock, k)
        for i = 1, 300 do d[k * 1000 + i] = { k, i } end
        d:update { ["done" .. k] = true }
        for _ = 1, 100 do -- a read-modify-write made atomic by a lock
          lock:acquire()
          d.total = (d.total or 0) + 1
          lock:release()
        end
      end, d, lock, k)
    end
    for _, p in ipairs(ps) do join_ok(p) end
    assert.are.equal(4 * 300 + 4 + 1, #d)
    for k = 1, 4 do
      assert.is_true(d["done" .. k])
      for i = 1, 300 do assert.are.same({ k, i }, d[k * 1000 + i]) end
    end
    assert.are.equal(400, d.total)
  end)

  it("shows the parent Namespace fields set in a child", function()
    local m <close> = mp.Manager()
    local ns = m:Namespace()
    ns.x = 1
    local p = start(function(ns)
      ns.x = ns.x + 41
      ns.name = "child"
      ns.nested = { a = { 1, 2 } }
    end, ns)
    join_ok(p)
    assert.are.equal(42, ns.x)
    assert.are.equal("child", ns.name)
    assert.are.same({ a = { 1, 2 } }, ns.nested)
    local fields = {}
    for k, v in pairs(ns) do fields[k] = v end
    assert.are.same({ x = 42, name = "child", nested = { a = { 1, 2 } } }, fields)
    ns.x = nil
    assert.is_nil(ns.x)
    assert.are.equal(2, #ns)
  end)

  -- Expected values below came from Python's multiprocessing Manager
  -- list/dict (python3, the same calls; indices shifted to 1-based).
  it("gives Python's results for every list method", function()
    local m <close> = mp.Manager()
    local l = m:list { 3, 1, 2 }
    l:append(5); l:extend { 4, 1 }
    assert.are.same({ 3, 1, 2, 5, 4, 1 }, l:totable())
    l:insert(1, 9); l:insert(4, 7); l:insert(#l + 1, 8)
    assert.are.same({ 9, 3, 1, 7, 2, 5, 4, 1, 8 }, l:totable())
    local a, b, c = l:pop(), l:pop(1), l:pop(3)
    assert.are.same({ 8, 9, 7 }, { a, b, c })
    assert.are.same({ 3, 1, 2, 5, 4, 1 }, l:totable())
    assert.are.equal(1 + 1, l:index(1))
    assert.are.equal(5 + 1, l:index(1, 2 + 1))
    assert.are.equal(2, l:count(1))
    assert.are.equal(0, l:count(99))
    l:remove(1)
    assert.are.same({ 3, 2, 5, 4, 1 }, l:totable())
    l[1] = 6
    assert.are.same({ 6, 2, 5, 4, 1 }, l:totable())
    assert.are.equal(5, #l)
    l:sort()
    assert.are.same({ 1, 2, 4, 5, 6 }, l:totable())
    l:sort(function(x, y) return x > y end)
    assert.are.same({ 6, 5, 4, 2, 1 }, l:totable())
    local p = m:list { { 2, "a" }, { 1, "b" }, { 2, "c" }, { 1, "d" }, { 0, "e" } }
    p:sort(function(x, y) return x[1] < y[1] end) -- stable, as Python's
    assert.are.same({ { 0, "e" }, { 1, "b" }, { 1, "d" }, { 2, "a" }, { 2, "c" } }, p:totable())
    assert.are.equal(3 + 1, p:index { 2, "a" })
    assert.are.equal(1, p:count { 1, "d" })
    p:remove { 1, "d" }
    assert.are.same({ { 0, "e" }, { 1, "b" }, { 2, "a" }, { 2, "c" } }, p:totable())
    local s = m:list { "pear", "apple", "fig" }
    s:sort()
    assert.are.same({ "apple", "fig", "pear" }, s:totable())
    -- numbers compare by value, as in both languages
    local f = m:list { 1.0, 2, 2.0 }
    assert.are.equal(1, f:index(1))
    assert.are.equal(2, f:count(2))
    -- table-like access
    local got = {}
    for i, v in ipairs(s) do got[i] = v end
    assert.are.same({ "apple", "fig", "pear" }, got)
    got = {}
    for i, v in pairs(s) do got[i] = v end
    assert.are.same({ "apple", "fig", "pear" }, got)
    s[#s + 1] = "plum"
    assert.are.equal("plum", s[4])
    assert.is_nil(s[5])
    assert.are.equal("['apple', 'fig', 'pear', 'plum']", tostring(s))
  end)

  it("gives Python's results for every dict method", function()
    local m <close> = mp.Manager()
    local d = m:dict { a = 1 }
    d.b = 2; d.c = 3; d.a = 10; d.b = nil; d.b = 4
    assert.are.same({ "a", "c", "b" }, d:keys())
    assert.are.same({ 10, 3, 4 }, d:values())
    assert.are.same({ { "a", 10 }, { "c", 3 }, { "b", 4 } }, d:items())
    assert.are.equal(10, d:get("a"))
    assert.is_nil(d:get("zz"))
    assert.are.equal(0, d:get("zz", 0))
    assert.are.equal(3, d:pop("c"))
    assert.are.equal("dflt", d:pop("zz", "dflt"))
    local kind, msg = kind_of(d.pop, d, "zz")
    assert.are.equal("KeyError", kind)
    assert.matches("zz", msg)
    assert.are.equal(10, d:setdefault("a", 0))
    assert.are.equal(5, d:setdefault("n", 5))
    assert.are.same({ "a", "b", "n" }, d:keys())
    local o = m:dict()
    o.y = 1; o.a = 2; o.z = 3
    d:update(o)
    assert.are.same({ { "a", 2 }, { "b", 4 }, { "n", 5 }, { "y", 1 }, { "z", 3 } }, d:items())
    assert.are.equal(5, #d)
    assert.are.same({ a = 2, b = 4, n = 5, y = 1, z = 3 }, d:totable())
    assert.are.equal("{'a': 2, 'b': 4, 'n': 5, 'y': 1, 'z': 3}", tostring(d))
    -- Lua's key rules: 1 and 1.0 are one key; true is its own key
    d[1] = "one"
    assert.are.equal("one", d[1.0])
    d[1.0] = "uno"
    assert.are.equal("uno", d[1])
    d[true] = "yes"; d[2.5] = "half"
    assert.are.equal("yes", d[true])
    assert.are.equal("half", d[2.5])
    local seen = {}
    for k, v in pairs(d) do seen[#seen + 1] = tostring(k) .. "=" .. tostring(v) end
    assert.are.same({ "a=2", "b=4", "n=5", "y=1", "z=3", "1=uno", "true=yes", "2.5=half" }, seen)
    -- -0.0 is the key 0; a long string key is one key as a short one is
    d[-0.0] = "zero"
    assert.are.equal("zero", d[0])
    local long = ("k"):rep(300)
    d[long] = "long"
    assert.are.equal("long", d[long])
    assert.is_nil(d[long .. "k"])
    d[0], d[long] = nil, nil
    -- a method name read as a field is the method; its data is reached with get
    d.keys = "data"
    assert.are.equal("function", type(d.keys))
    assert.are.equal("data", d:get("keys"))
  end)

  it("has Python's list.clear and reverse, dict.clear, copy and popitem", function()
    local m <close> = mp.Manager()
    local l = m:list { 1, "two", 3, { 4 } }
    l:reverse()
    assert.are.same({ { 4 }, 3, "two", 1 }, l:totable())
    local p = start(function(lst) lst:reverse() end, l) -- seen by another process
    join_ok(p)
    assert.are.same({ 1, "two", 3, { 4 } }, l:totable())
    collectgarbage()
    local objects = mp.arena_stats().objects
    l:append(mp.Queue()) -- a stored handle is given back by clear
    l:clear()
    assert.are.equal(0, #l)
    collectgarbage()
    assert.are.equal(objects, mp.arena_stats().objects)
    l:clear()
    assert.are.same({}, l:totable())
    local d = m:dict()
    d.a = 1; d.b = { 2 }; d.c = 3
    local c = d:copy()
    assert.are.same({ a = 1, b = { 2 }, c = 3 }, c)
    assert.are.equal("table", type(c)) -- a plain copy, as Python's dict.copy
    local k, v = d:popitem()
    assert.are.equal("c", k); assert.are.equal(3, v)
    d.z = mp.Queue()
    p = start(function(dd) local key, val = dd:popitem(); dd.got = key .. tostring(val:qsize()) end, d)
    join_ok(p)
    assert.are.same({ "a", "b", "got" }, d:keys())
    assert.are.equal("z0", d.got)
    d:clear()
    assert.are.equal(0, #d)
    assert.are.same({}, d:keys())
    collectgarbage()
    assert.are.equal(objects + 1, mp.arena_stats().objects) -- the dict itself
    local kind = kind_of(d.popitem, d)
    assert.are.equal("KeyError", kind)
  end)

  it("carries proxies to children as arguments, upvalues and in messages", function()
    local m <close> = mp.Manager()
    local l, d = m:list(), m:dict()
    local q = mp.Queue()
    local p = start(function()
      l:append("upvalue")
      local got = q:get(30)
      got.list:append("message")
      got.dict.from = "message"
    end)
    q:put { list = l, dict = d }
    join_ok(p)
    p = start(function(l) l:append("argument") end, l)
    join_ok(p)
    assert.are.same({ "upvalue", "message", "argument" }, l:totable())
    assert.are.equal("message", d.from)
  end)

  it("stores a proxy inside a proxy as a reference", function()
    local m <close> = mp.Manager()
    local outer, inner = m:dict(), m:list { 1 }
    outer.inner = inner
    local p = start(function(outer) outer.inner:append(2) end, outer)
    join_ok(p)
    assert.are.same({ 1, 2 }, inner:totable())
    assert.is_true(outer.inner == inner)
    local l = m:list()
    l:append(inner)
    l:append(inner)
    assert.are.equal(1, l:index(inner))
    assert.are.equal(2, l:count(inner))
    l[1] = "replaced" -- the stored reference is released
    l:pop()
    outer.inner = nil
    collectgarbage()
    assert.are.same({ 1, 2 }, inner:totable())
    -- queues and locks stored in a dict work where they arrive
    local q, lock = m:Queue(), m:Lock()
    outer.q, outer.lock = q, lock
    p = start(function(outer)
      outer.lock:acquire()
      outer.q:put("through the dict")
      outer.lock:release()
    end, outer)
    assert.are.equal("through the dict", q:get(30))
    join_ok(p)
  end)

  -- A child parks inside the operation holding the lock (chosen point:
  -- just before or just after the store that publishes it) and is
  -- SIGKILLed there; the next operation recovers and finds the structure
  -- exactly as before or exactly as after.
  local kill_cases = {
    { "list append", function(m) return m:list { 1, 2, 3 } end,
      function(l) l:append(4) end, { 1, 2, 3 }, { 1, 2, 3, 4 } },
    { "list append that grows", function(m) return m:list { 1, 2, 3, 4, 5, 6, 7, 8 } end,
      function(l) l:append(9) end, { 1, 2, 3, 4, 5, 6, 7, 8 }, { 1, 2, 3, 4, 5, 6, 7, 8, 9 } },
    { "list insert", function(m) return m:list { 1, 2, 3 } end,
      function(l) l:insert(1, 0) end, { 1, 2, 3 }, { 0, 1, 2, 3 } },
    { "list pop", function(m) return m:list { 1, 2, 3 } end,
      function(l) l:pop(2) end, { 1, 2, 3 }, { 1, 3 } },
    { "list set", function(m) return m:list { 1, 2, 3 } end,
      function(l) l[2] = "two" end, { 1, 2, 3 }, { 1, "two", 3 } },
    { "list sort", function(m) return m:list { 3, 1, 2 } end,
      function(l) l:sort() end, { 3, 1, 2 }, { 1, 2, 3 } },
    { "dict set", function(m) return m:dict { a = 1 } end,
      function(d) d.b = 2 end, { a = 1 }, { a = 1, b = 2 } },
    { "dict replace", function(m) return m:dict { a = 1 } end,
      function(d) d.a = { "big", ("x"):rep(1000) } end, { a = 1 }, { a = { "big", ("x"):rep(1000) } } },
    { "dict delete", function(m) return m:dict { a = 1, b = 2 } end,
      function(d) d.a = nil end, { a = 1, b = 2 }, { b = 2 } },
  }
  for _, kc in ipairs(kill_cases) do
    local name, make, op, before, after = table.unpack(kc)
    it("stays consistent when a client is killed in a " .. name, function()
      for _, where in ipairs { "before", "after" } do
        local m <close> = mp.Manager()
        local obj = make(m)
        local p = start(function(obj, where)
          testing.manager_park(where)
          op(obj)
          error("not parked")
        end, obj, where)
        assert.is_true(H.wait_until(function() return testing.manager_parked(obj) == 1 end, 30))
        p:kill()
        assert.is_true(p:join(30))
        assert.are.equal(-9, p.exitcode)
        local want = where == "before" and before or after
        assert.are.same(want, obj:totable())
        assert.are.equal(1, testing.manager_recoveries(obj))
        -- and it keeps working
        if before[1] then
          obj:append("more")
          assert.are.equal(#want + 1, #obj)
        else
          obj.more = true
          local n = 0
          for _ in pairs(want) do n = n + 1 end
          assert.are.equal(n + 1, #obj)
          for k, v in pairs(want) do assert.are.same(v, obj[k]) end
        end
      end
    end)
  end

  it("raises Closed after shutdown, in every process", function()
    local m = mp.Manager()
    local l, d, ns = m:list { 1 }, m:dict { a = 1 }, m:Namespace()
    local q, ev = m:Queue(), m:Event()
    m:shutdown()
    assert.is_true(m:is_shutdown())
    for _, f in ipairs {
      function() return l[1] end, function() return #l end, function() l:append(2) end,
      function() return d.a end, function() d.b = 1 end, function() return d:keys() end,
      function() return ns.x end, function() return m:list() end, function() return m:Lock() end,
    } do
      assert.are.equal("Closed", (kind_of(f)))
    end
    local _, msg = kind_of(l.append, l, 3)
    assert.matches("shut down", msg)
    assert.are.equal("ListProxy (shut down)", tostring(l))
    assert.are.equal("Manager (shut down)", tostring(m))
    assert.is_true(q:is_closed()) -- the manager's queues are closed
    ev:set()                        -- its other objects live on while referenced
    assert.is_true(ev:is_set())
    local p = start(function(l)
      local ok, err = pcall(l.append, l, 1)
      if ok or err.kind ~= "Closed" then error("expected Closed, got " .. tostring(err)) end
    end, l)
    join_ok(p)
    m:shutdown() -- again: nothing happens
  end)

  it("shuts down at the end of a <close> scope, and from a child", function()
    local l
    do
      local m <close> = mp.Manager()
      l = m:list { 1 }
    end
    assert.are.equal("Closed", (kind_of(l.append, l, 2)))
    local m = mp.Manager()
    local d = m:dict()
    local p = start(function(m) m:shutdown() end, m)
    join_ok(p)
    assert.are.equal("Closed", (kind_of(function() d.x = 1 end)))
  end)

  it("makes the ordinary shared objects", function()
    local m <close> = mp.Manager()
    local q, jq = m:Queue(), m:JoinableQueue()
    local lk, rl, sem, ev = m:Lock(), m:RLock(), m:Semaphore(2), m:Event()
    local cond, bar = m:Condition(), m:Barrier(1)
    local v, arr = m:Value("i", 7), m:Array("d", { 1.5, 2.5 })
    local p = start(function(q, jq, lk, ev, v, arr)
      lk:acquire()
      v.value = v.value + 1
      arr[2] = 4.5
      lk:release()
      q:put("q")
      jq:put("jq")
      ev:set()
    end, q, jq, lk, ev, v, arr)
    assert.are.equal("q", q:get(30))
    assert.are.equal("jq", jq:get(30))
    jq:task_done()
    assert.is_true(ev:wait(30))
    join_ok(p)
    assert.are.equal(8, v.value)
    assert.are.same({ 1.5, 4.5 }, arr:totable())
    assert.is_true(rl:acquire()); rl:release()
    assert.is_true(sem:acquire(0)); sem:release()
    assert.is_true(cond:acquire()); cond:release()
    assert.are.equal(1, bar:wait(5))
  end)

  it("rejects misuse with clear errors", function()
    local m <close> = mp.Manager()
    local l = m:list { "a", "b" }
    local kind, msg = kind_of(function() return l[0] end)
    assert.are.equal("IndexError", kind); assert.matches("index 0", msg)
    kind, msg = kind_of(function() return l[4] end)
    assert.are.equal("IndexError", kind); assert.matches("index 4", msg)
    assert.is_nil(l[3]) -- #l + 1 reads nil, so ipairs stops
    kind, msg = kind_of(function() l[5] = 1 end)
    assert.are.equal("IndexError", kind); assert.matches("5", msg)
    assert.are.equal("IndexError", (kind_of(l.pop, l, 3)))
    assert.are.equal("IndexError", (kind_of(l.insert, l, 0, "x")))
    assert.are.equal("ValueError", (kind_of(function() return l[1.5] end)))
    kind, msg = kind_of(l.remove, l, "zz")
    assert.are.equal("ValueError", kind); assert.matches("not in list", msg)
    assert.are.equal("ValueError", (kind_of(l.index, l, "zz")))
    local e = m:list()
    kind, msg = kind_of(e.pop, e)
    assert.are.equal("IndexError", kind); assert.matches("empty", msg)
    local d = m:dict()
    kind, msg = kind_of(function() d[{}] = 1 end)
    assert.are.equal("ValueError", kind); assert.matches("table", msg)
    kind, msg = kind_of(function() return d[0 / 0] end)
    assert.are.equal("ValueError", kind); assert.matches("NaN", msg)
    assert.are.equal("ValueError", (kind_of(function() return d[print] end)))
    assert.are.equal("EncodeError", (kind_of(l.append, l, coroutine.create(print))))
    assert.are.same({ "a", "b" }, l:totable()) -- unchanged
    -- a comparator that calls back into the list it sorts
    kind = kind_of(l.sort, l, function(x, y) return #l > 0 and x < y end)
    assert.are.equal("StateError", kind)
    l:append("c") -- the lock was given back
    assert.are.equal(3, #l)
    assert.are.equal("ValueError", (kind_of(l.extend, l, 42)))
    local ns = m:Namespace()
    assert.are.equal("ValueError", (kind_of(function() ns[1] = 2 end)))
  end)

  it("runs the seed's Manager example", function()
    local out, err, code = H.run({ "scripts/manager/shared_list_dict.lua" }, nil,
                                 { CORRAL_START_METHOD = H.method })
    assert.are.equal(0, code, err)
    assert.matches("最终列表: %[1, 2, 3, 4, 5%]", out)
    assert.matches("最终字典: {'a': 1, 'b': 2, 'c': 3}", out)
    assert.matches("所有进程执行完毕", out)
    local added = 0
    for _ in out:gmatch("添加了元素") do added = added + 1 end
    assert.are.equal(5, added)
  end)
end)
