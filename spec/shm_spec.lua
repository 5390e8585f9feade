-- Shared memory: Value, Array, RawValue, RawArray. Ports the behaviours of
-- Python's multiprocessing tests (test_value, test_array, test_rawvalue,
-- test_getobj_getlock...): every typecode, ranges, bounds, zero-filled
-- arrays, writes from a child seen by the parent, atomic add and
-- compare_and_set. Runs under both start methods.
local H = require "spec.helper"
local mp = H.mp
local G = package.loaded._G
local check = G.assert

local start = H.start

local join_ok = H.join_ok

local raises = H.raises

describe("shm (" .. H.method .. ")", function()
  after_each(function() H.assert_no_children() end)

  it("stores every typecode with C semantics", function()
    local cases = {
      { "b", -128, 127 }, { "B", 0, 255 }, { "h", -32768, 32767 }, { "H", 0, 65535 },
      { "i", -2147483648, 2147483647 }, { "I", 0, 4294967295 },
      { "l", math.mininteger, math.maxinteger }, { "L", 0, math.maxinteger },
      { "q", math.mininteger, math.maxinteger }, { "Q", 0, math.maxinteger },
    }
    for _, c in ipairs(cases) do
      local tc, lo, hi = c[1], c[2], c[3]
      local v = mp.Value(tc, lo)
      assert.are.equal(lo, v.value)
      v.value = hi
      assert.are.equal(hi, v.value)
      assert.is_true(math.type(v.value) == "integer")
      if hi < math.maxinteger then raises("OverflowError", function() v.value = hi + 1 end) end
      if lo > math.mininteger then raises("OverflowError", function() v.value = lo - 1 end) end
      assert.are.equal(hi, v.value) -- unchanged by the failed stores
      v.value = 3.0                  -- a float with an integer value is fine
      assert.are.equal(3, v.value)
      raises("TypeError", function() v.value = 3.5 end)
      raises("TypeError", function() v.value = "3" end)
    end
    local f = mp.Value('f', 0.1)
    assert.are.equal(string.unpack("f", string.pack("f", 0.1)), f.value) -- single precision
    assert.are_not.equal(0.1, f.value)
    local d = mp.Value('d', 0.1)
    assert.are.equal(0.1, d.value)
    raises("TypeError", function() d.value = "x" end)
    local c = mp.Value('c', "x")
    assert.are.equal("x", c.value)
    c.value = 65
    assert.are.equal("A", c.value)
    raises("ValueError", function() c.value = "ab" end)
    raises("TypeError", function() c.value = 1.5 end)
    raises("ValueError", mp.Value, 'z', 0)
    raises("ValueError", mp.Value, 'ii', 0)
    assert.are.equal(0, mp.Value('i').value)
  end)

  it("Array: zero-filled, indexed 1..n, bounds checked, # and ipairs and totable", function()
    local a = mp.Array('i', 10)
    assert.are.equal(10, #a)
    for i = 1, 10 do assert.are.equal(0, a[i]) end
    for i = 1, 10 do a[i] = i * i end
    local seen = {}
    for i, v in ipairs(a) do seen[i] = v end
    assert.are.same({ 1, 4, 9, 16, 25, 36, 49, 64, 81, 100 }, seen)
    assert.are.same(seen, a:totable())
    raises("IndexError", function() return a[0] end)
    raises("IndexError", function() return a[12] end)
    raises("IndexError", function() a[0] = 1 end)
    raises("IndexError", function() a[11] = 1 end)
    raises("IndexError", function() return a[1.5] end)
    assert.is_nil(a[11]) -- the end, as ipairs sees it
    local t = mp.Array('d', { 1.5, 2.5 })
    assert.are.same({ 1.5, 2.5 }, t:totable())
    local s = mp.Array('c', "hello")
    assert.are.equal("hello", table.concat(s:totable()))
    assert.are.equal(0, #mp.Array('b', 0))
    raises("OverflowError", mp.Array, 'b', { 1, 1000 })
    raises("ValueError", mp.Array, 'q', -1)
    assert.matches("^Array%('i', 10%)", tostring(a))
  end)

  it("a child's writes are visible in the parent", function()
    local v, arr = mp.Value('d', 0), mp.Array('q', 100)
    local p = start(function(v2, arr2)
      v2.value = 3.25
      for i = 1, #arr2 do arr2[i] = i * 1000 end
    end, v, arr)
    join_ok(p)
    assert.are.equal(3.25, v.value)
    for i = 1, 100 do assert.are.equal(i * 1000, arr[i]) end
    local q = start(function() v.value = -1; arr[100] = 7 end) -- as upvalues
    join_ok(q)
    assert.are.equal(-1, v.value)
    assert.are.equal(7, arr[100])
  end)

  it("has a lock by default (an RLock), none for Raw ones, or the one given", function()
    local v = mp.Value('i', 1)
    local l = v:get_lock()
    assert.matches("^RLock", tostring(l))
    assert.are.equal(l, v:get_lock())
    assert.is_true(l:acquire()); l:release()
    raises("ValueError", mp.RawValue('i', 1).get_lock, mp.RawValue('i', 1))
    raises("ValueError", mp.Value('i', 1, { lock = false }).get_lock, mp.Value('i', 1, { lock = false }))
    local mine = mp.Lock()
    local w = mp.Array('i', 3, { lock = mine })
    local got = w:get_lock()
    assert.is_true(got:acquire(0))
    assert.is_false(mine:acquire(0)) -- the same lock
    got:release()
    raises("ValueError", mp.Value, 'i', 0, { lock = 42 })
    assert.matches("^RawValue", tostring(mp.RawValue('i', 1)))
    assert.matches("^RawArray", tostring(mp.RawArray('i', 1)))
  end)

  it("add and compare_and_set are atomic and need no lock", function()
    local v = mp.RawValue('q', 0)
    assert.are.equal(5, v:add(5))
    assert.are.equal(4, v:add(-1))
    assert.is_true(v:compare_and_set(4, 10))
    assert.is_false(v:compare_and_set(4, 11))
    assert.are.equal(10, v.value)
    local b = mp.Value('b', 120)
    raises("OverflowError", b.add, b, 10)
    assert.are.equal(120, b.value)
    raises("OverflowError", b.compare_and_set, b, 120, 1000)
    raises("TypeError", mp.Value('d', 1).add, mp.Value('d', 1), 1)
    local procs = {}
    for i = 1, 4 do procs[i] = start(function() for _ = 1, 10000 do v:add(1) end end) end
    for _, p in ipairs(procs) do join_ok(p) end
    assert.are.equal(40010, v.value)
    local claimed = mp.Array('i', 4)
    local slot = mp.Value('i', 0)
    for i = 1, 4 do
      procs[i] = start(function(me)
        while true do -- take the next slot with compare_and_set, as a ticket counter
          local s = slot.value
          if s >= 4 then break end
          if slot:compare_and_set(s, s + 1) then check(claimed[s + 1] == 0); claimed[s + 1] = me end
        end
      end, i)
    end
    for _, p in ipairs(procs) do join_ok(p) end
    for i = 1, 4 do assert.is_true(claimed[i] >= 1) end
  end)

  it("closes: idempotent, then refuses use", function()
    local v = mp.Value('i', 1)
    v:close(); v:close()
    assert.matches("closed", tostring(v))
    local err = raises("Closed", function() return v.value end)
    assert.matches("attempt to use a closed Value", tostring(err))
    local a = mp.Array('i', 2)
    a:close()
    raises("Closed", function() return #a end)
  end)
end)
