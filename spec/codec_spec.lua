-- The value codec (docs/api.md): round trips of every type, names,
-- functions and upvalues, handles, error paths in the sender, hostile input
-- in the receiver, and closures sent to spawned children.
--
-- Functions that get encoded here use only upvalues, or are loaded with the
-- real globals as their environment: busted runs spec code in its own
-- environment table, which is no value to send anywhere.
local H = require "spec.helper"
local mp = H.mp

local encode, decode = mp.encode, mp.decode
local function trusted(s) return decode(s, { trusted = true }) end
local function rt(v) return trusted(encode(v)) end

-- Functions whose globals are the real globals table.
local function G(src, name) return assert(load(src, name or "=codec_spec_chunk", "t", _G)) end

-- The core table (the C module's own functions, _pack and the like).
local function core()
  for i = 1, 255 do
    local n, v = debug.getupvalue(mp.Process.start, i)
    if n == "core" then return v end
    if not n then break end
  end
end
-- The test object: a shared integer cell.
local testobj = require("corral.testing").testobj

-- Runs f(...) and returns the error object it raises (fails if none).
local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert(not ok, "expected an error")
  return e
end

local function assert_kind(e, kind)
  assert(mp.iserror(e, kind), "expected a " .. kind .. ", got " .. tostring(e))
end

local function varint(n)
  local out = {}
  repeat
    local b = n % 128
    n = n // 128
    out[#out + 1] = string.char(n > 0 and b + 128 or b)
  until n == 0
  return table.concat(out)
end

local HDR = "\203\1"

describe("carried globals (" .. H.method .. ")", function()
  after_each(function() H.cleanup() end)

  it("a main-chunk function carries the globals it names that the receiver lacks, not library tables", function()
    local script = H.script([[
      local mp = require "corral"
      local pool <close> = mp.Pool(1)
      function fact(n) if n <= 1 then return 1 end return n * fact(n - 1) end
      function g(x) return fact(x) + base + helper(x) + #string.rep("a", 2) end
      function helper(x) return data.k[x] end
      base, data = 10, { k = { 100, 200, 300 } }
      print(table.concat(pool:map(g, { 1, 2, 3 }), " "))
      -- the receiver keeps a global it has (here: its own string library)
      local s = mp.decode(mp.encode(g), { trusted = true })
      print(s(2), rawequal(string, _G.string))
      co = coroutine.create(print) -- cannot travel: stays behind
      print(pool:apply(function() return type(co) end))
    ]])
    local out, err, code = H.run({ script }, nil, { CORRAL_START_METHOD = H.method })
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("113 214 318\n214\ttrue\nnil\n", out)
  end)

  it("says how to do without when a function names too many globals", function()
    local lines = { "local mp = require 'corral'" }
    local names = {}
    for i = 1, 300 do
      lines[#lines + 1] = ("g%d = %d"):format(i, i)
      names[#names + 1] = "g" .. i
    end
    lines[#lines + 1] = "local function f() return " .. table.concat(names, " + ") .. " end"
    lines[#lines + 1] = "local ok, err = pcall(mp.encode, f)"
    lines[#lines + 1] = "print(mp.iserror(err, 'EncodeError'), err.message)"
    local out, err = H.run({ H.script(table.concat(lines, "\n")) })
    assert.are.equal("", err)
    assert.matches("^true\t[^\n]*cannot carry more than 256 globals", out)
  end)
end)

describe("codec #codec", function()
  describe("scalars", function()
    it("round-trips nil and booleans", function()
      assert.is_nil(rt(nil))
      assert.is_true(rt(true))
      assert.is_false(rt(false))
    end)

    it("keeps integers exactly, subtype included", function()
      for _, i in ipairs { 0, 1, -1, 31, -32, -33, 127, 128, 255, 256, 65535, -65536, 2 ^ 31 | 0, -(2 ^ 31 | 0),
                           2 ^ 53 | 0, math.maxinteger, math.mininteger, math.maxinteger - 1, math.mininteger + 1 } do
        local r = rt(i)
        assert.equal(i, r)
        assert.equal("integer", math.type(r))
      end
    end)

    it("keeps floats exactly, subtype included", function()
      for _, f in ipairs { 0.0, 1.0, -1.0, 0.5, 0.1, 1 / 3, 1e300, -1e-300, 5e-324, 2 ^ 63, -2 ^ 63, 3.4028234663852886e38,
                           1.7976931348623157e308, 1 / 0, -1 / 0 } do
        local r = rt(f)
        assert.equal(f, r)
        assert.equal("float", math.type(r))
      end
      assert.equal("float", math.type(rt(1.0)))
      assert.equal("integer", math.type(rt(1)))
    end)

    it("keeps NaN and the sign of zero", function()
      local n = rt(0 / 0)
      assert.is_true(n ~= n)
      assert.equal("float", math.type(n))
      assert.equal(-1 / 0, 1 / rt(-0.0))
      assert.equal(1 / 0, 1 / rt(0.0))
    end)

    it("keeps binary strings", function()
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      for _, s in ipairs { "", "a", ("x"):rep(31), ("y"):rep(32), "\0", "a\0b\0", table.concat(all), ("\0\255"):rep(50000) } do
        assert.equal(s, rt(s))
      end
    end)

    it("is compact for small values and starts with a magic and a version byte", function()
      assert.equal(3, #encode(5))
      assert.equal(3, #encode(-1))
      assert.is_true(#encode(1000) <= 5)
      assert.is_true(#encode(math.mininteger) <= 13)
      assert.equal(8, #encode("hello"))
      assert.equal(HDR, encode(nil):sub(1, 2))
    end)
  end)

  describe("tables", function()
    it("round-trips nested tables with every kind of key", function()
      local k = {}
      local t = { 1, 2, "three", { 4, { 5 } }, x = { y = { z = "deep" } }, [1.5] = "f", [-3] = "neg", [true] = "t",
                  [false] = 0, ["odd key"] = 1, [k] = "table key", [math.maxinteger] = "max" }
      local r = rt(t)
      assert.same({ 1, 2, "three", { 4, { 5 } } }, { r[1], r[2], r[3], r[4] })
      assert.equal("deep", r.x.y.z)
      assert.equal("f", r[1.5])
      assert.equal("neg", r[-3])
      assert.equal("t", r[true])
      assert.equal(0, r[false])
      assert.equal(1, r["odd key"])
      assert.equal("max", r[math.maxinteger])
      local found
      for key, v in pairs(r) do
        if type(key) == "table" then found = v end
      end
      assert.equal("table key", found)
    end)

    it("keeps holes in arrays", function()
      local r = rt { 1, nil, 3, nil, nil, 6 }
      assert.equal(1, r[1]); assert.is_nil(r[2]); assert.equal(3, r[3]); assert.equal(6, r[6])
      local n = 0
      for _ in pairs(r) do n = n + 1 end
      assert.equal(3, n)
    end)

    it("keeps shared references and cycles", function()
      local shared = { "s" }
      local t = { a = shared, b = shared, list = { shared, shared } }
      t.self = t
      t.list.parent = t
      local r = rt(t)
      assert.equal(r, r.self)
      assert.equal(r, r.list.parent)
      assert.equal(r.a, r.b)
      assert.equal(r.a, r.list[1])
      assert.equal(r.a, r.list[2])
      assert.equal("s", r.a[1])
    end)

    it("keeps a table used as its own key", function()
      local t = {}
      t[t] = t
      local r = rt(t)
      assert.equal(r, r[r])
    end)

    it("round-trips large tables", function()
      local t = {}
      for i = 1, 10000 do t[i] = i * 2 end
      for i = 1, 1000 do t["k" .. i] = { i } end
      local r = rt(t)
      for i = 1, 10000 do assert(r[i] == i * 2) end
      for i = 1, 1000 do assert(r["k" .. i][1] == i) end
    end)

    it("round-trips arrays whose integer keys live outside the array part", function()
      -- built backwards and sparse, so Lua keeps many of them in the hash part
      local t = {}
      for i = 300, 1, -1 do t[i] = i end
      t[1000], t[-5], t.name = "far", "neg", "n"
      local r = rt(t)
      local n = 0
      for k, v in pairs(t) do assert(r[k] == v, tostring(k)); n = n + 1 end
      for _ in pairs(r) do n = n - 1 end
      assert.equal(0, n)
      assert.equal(300, #r)
    end)

    it("packs a stretch of an array as the array it would copy to (_pack_slice)", function()
      local c = core()
      local list = { 10, "b", { 30 }, 4.5, true }
      for i = 1, #list do
        for j = i - 1, #list do
          assert.equal(c._pack(table.move(list, i, j, 1, {})), c._pack_slice(list, i, j))
        end
      end
      local r = c._unpack(c._pack_slice({ 1, nil, 3 }, 1, 3))
      assert.equal(1, r[1]); assert.is_nil(r[2]); assert.equal(3, r[3])
      local e = err_of(c._pack_slice, { 1, coroutine.create(print) }, 1, 2, "args")
      assert_kind(e, "EncodeError")
      assert.matches("args%[2%]", e.message)
      assert.is_false(pcall(c._pack_slice, list, 0, 2))
    end)

    it("unpacks an array into a table at an offset (_unpack_into)", function()
      local c = core()
      local dest = { "kept" }
      c._unpack_into("hdr" .. c._pack({ 1, nil, "three", { 4 } }), 4, dest, 2)
      assert.equal("kept", dest[1]); assert.equal(1, dest[2]); assert.is_nil(dest[3])
      assert.equal("three", dest[4]); assert.equal(4, dest[5][1])
      local sparse = {}
      sparse[1], sparse[7] = "a", "g"
      c._unpack_into(c._pack(sparse), 1, dest, 10)
      assert.equal("a", dest[10]); assert.equal("g", dest[16])
      local selfref = {}
      selfref[1] = selfref -- the array itself is numbered as dest
      local d2 = {}
      c._unpack_into(c._pack(selfref), 1, d2, 1)
      assert.equal(d2, d2[1])
      for _, bad in ipairs{ c._pack({ x = 1 }), c._pack(5), c._pack(setmetatable({ 1 }, { __index = {} })),
                            c._pack({ [0] = 1 }), "junk" } do
        assert_kind(err_of(c._unpack_into, bad, 1, {}, 1), "DecodeError")
      end
    end)

    it("refuses a table nested too deep with an EncodeError, not a crash", function()
      local deep = {}
      local c = deep
      for _ = 1, 100000 do c[1] = {}; c = c[1] end
      local e = err_of(encode, deep)
      assert_kind(e, "EncodeError")
      assert.matches("nested more than %d+ levels", e.message)
      -- 500 levels are fine
      local ok = {}
      c = ok
      for _ = 1, 500 do c.n = {}; c = c.n end
      c.leaf = true
      local r = rt(ok)
      for _ = 1, 500 do r = r.n end
      assert.is_true(r.leaf)
    end)
  end)

  describe("metatables", function()
    it("sends a registered metatable by its name", function()
      local e = err_of(encode, coroutine.create(function() end))
      local r = decode(encode(e))
      assert.equal(getmetatable(e), getmetatable(r))
      assert.equal(tostring(e), tostring(r))
      assert.is_true(mp.iserror(r, "EncodeError"))
    end)

    it("sends a registered metatable met as a plain value by its name too", function()
      local e = err_of(encode, coroutine.create(function() end))
      local mt = getmetatable(e)
      local r = decode(encode({ mt, e }))
      assert.equal(mt, r[1])
      assert.equal(mt, getmetatable(r[2]))
    end)

    it("sends a metatable registered from Lua by name, and refuses an unknown one", function()
      local reg = debug.getregistry()
      local mt = { __name = "codec_spec.Registered", __index = { hello = "world" } }
      reg["codec_spec.Registered"] = mt
      local s = encode(setmetatable({ 1 }, mt))
      local r = decode(s)
      assert.equal(mt, getmetatable(r))
      assert.equal("world", r.hello)
      reg["codec_spec.Registered"] = nil
      local e = err_of(decode, s)
      assert_kind(e, "DecodeError")
      assert.matches("unknown metatable \"codec_spec.Registered\"", e.message, 1, true)
    end)

    it("sends a metatable found in package.loaded by name", function()
      local Point = { __index = {} }
      function Point.__index.norm1(p) return p.x + p.y end
      package.loaded["codec_spec.classes"] = { Point = Point }
      local s = encode({ setmetatable({ x = 1, y = 2 }, Point), setmetatable({ x = 3, y = 4 }, Point) })
      local r = decode(s)
      assert.equal(Point, getmetatable(r[1]))
      assert.equal(Point, getmetatable(r[2]))
      assert.equal(3, r[1]:norm1())
      package.loaded["codec_spec.classes"] = nil
      assert_kind(err_of(decode, s), "DecodeError")
      local e = err_of(trusted, s)
      assert_kind(e, "DecodeError")
      assert.matches("codec_spec.classes", e.message, 1, true)
    end)

    it("sends any other metatable by value, shared between the tables that use it", function()
      local mt = { kind = "point", __index = { twice = 2 } }
      local r = rt { setmetatable({}, mt), setmetatable({}, mt) }
      local m1 = getmetatable(r[1])
      assert.are_not.equal(mt, m1)
      assert.equal(m1, getmetatable(r[2]))
      assert.equal("point", m1.kind)
      assert.equal(2, r[1].twice)
    end)

    it("sets the metatable after the contents (no __newindex during decoding)", function()
      local log = {}
      local mt = setmetatable({}, { __index = function() return nil end })
      mt.__newindex = G("local log = ...; return function(t, k, v) log[#log + 1] = k end")(log)
      local t = setmetatable({}, mt)
      rawset(t, "a", 1)
      local r = rt(t)
      assert.equal(1, rawget(r, "a"))
      assert.equal(0, #log)
    end)
  end)

  describe("functions", function()
    it("round-trips a Lua function with number, string, table and function upvalues", function()
      local n, s, t = 10, "x", { 1, 2, 3 }
      local function double(v) return v * 2 end
      local f = function(a) return double(a + n) .. s .. #t end
      local g = rt(f)
      assert.are_not.equal(f, g)
      assert.equal("22x3", g(1))
    end)

    it("keeps a recursive function working", function()
      local function fact(k) if k <= 1 then return 1 end return k * fact(k - 1) end
      assert.equal(120, rt(fact)(5))
    end)

    it("keeps upvalues shared between closures of one message", function()
      local function counter()
        local c = 0
        return function() c = c + 1; return c end, function() return c end
      end
      local inc, get = counter()
      local r = rt { inc = inc, get = get }
      r.inc(); r.inc()
      assert.equal(2, r.get())
      assert.equal(0, get()) -- the sender's counter is untouched
      -- in separate messages they are separate
      local inc2, get2 = rt(inc), rt(get)
      inc2()
      assert.equal(0, get2())
    end)

    it("keeps a closure that reaches itself through a table upvalue", function()
      local reg = {}
      local function f() return reg end
      reg.f = f
      local shared = {}
      local function a() return shared end
      local function b() return shared end
      local r = rt { f = f, a = a, b = b }
      assert.equal(r.f, r.f().f)
      assert.equal(r.a(), r.b())
    end)

    it("keeps the same function once per message", function()
      local function f() return 1 end
      local r = rt { f, f, { f } }
      assert.equal(r[1], r[2])
      assert.equal(r[1], r[3][1])
    end)

    it("rebinds _ENV to the receiver's globals, whatever table it was in the sender", function()
      local f = G("return function() return string.rep('a', 3), _ENV == _G end")()
      local r = rt(f)
      local s, same = r()
      assert.equal("aaa", s)
      assert.is_true(same)
      -- A function with an environment of its own also gets the receiver's
      -- globals: the sender's environment does not exist over there.
      local custom = assert(load("return _ENV == _G, x", "=custom", "t", { x = 41 }))
      local is_g, x = rt(custom)()
      assert.is_true(is_g)
      assert.is_nil(x)
    end)

    it("keeps debug information: errors carry the line number", function()
      local f = G("local n = ...\nreturn function()\n  error('boom ' .. n)\nend", "@codec_chunk.lua")(7)
      local ok, msg = pcall(rt(f))
      assert.is_false(ok)
      assert.matches("codec_chunk.lua:3: boom 7", msg, 1, true)
      local info = debug.getinfo(rt(f), "S")
      assert.equal("@codec_chunk.lua", info.source)
    end)

    it("sends C functions and library tables by their name in package.loaded", function()
      assert.equal(string.format, rt(string.format))
      assert.equal(print, rt(print))
      assert.equal(io.stdout, rt(io.stdout))
      assert.equal(mp.encode, rt(mp.encode))
      local fmt, strlib = string.format, string
      local f = function(x) return fmt("%03d", x), strlib end
      local a, lib = rt(f)(7)
      assert.equal("007", a)
      assert.equal(string, lib)
    end)

    it("sends a Lua function of a loaded module by name, a user global by value", function()
      local mod = { fn = function() return "module" end }
      package.loaded["codec_spec.mod"] = mod
      assert.equal(mod.fn, rt(mod.fn))
      local s = encode({ f = mod.fn })
      package.loaded["codec_spec.mod"] = nil
      local e = err_of(trusted, s)
      assert_kind(e, "DecodeError")
      assert.matches("cannot load module \"codec_spec.mod\"", e.message, 1, true)
      rawset(_G, "codec_spec_global", function() return "global" end)
      local g = rawget(_G, "codec_spec_global")
      local r = rt(g)
      assert.are_not.equal(g, r)
      assert.equal("global", r())
      rawset(_G, "codec_spec_global", nil)
    end)

    it("follows changes of package.loaded between messages", function()
      local mod = { fn = function() return 1 end }
      package.loaded["codec_spec.changing"] = mod
      local old = mod.fn
      assert.equal(old, rt(old))
      mod.fn = function() return 2 end -- old no longer has that name
      local r = rt(old)
      assert.are_not.equal(mod.fn, r)
      assert.are_not.equal(old, r)
      assert.equal(1, r())
      local later = { cfn = string.upper, lfn = function() return 3 end }
      package.loaded["codec_spec.later"] = later
      assert.equal(later.lfn, rt(later.lfn))
      mod.cfn = coroutine.wrap(function() end) -- a C function named only now
      assert.equal(mod.cfn, rt(mod.cfn))
      package.loaded["codec_spec.changing"] = nil
      package.loaded["codec_spec.later"] = nil
    end)

    it("reports an unknown name in the receiver", function()
      local mod = { fn = function() return 1 end }
      package.loaded["codec_spec.gone"] = mod
      local s = encode(mod.fn)
      mod.fn = nil
      local e = err_of(trusted, s)
      assert_kind(e, "DecodeError")
      assert.matches("unknown name \"fn\" in module \"codec_spec.gone\"", e.message, 1, true)
      package.loaded["codec_spec.gone"] = nil
    end)

    it("refuses functions by default (untrusted data)", function()
      local n = 1
      for _, v in ipairs { function() return n end, { cb = function() return n end }, string.format, print } do
        local e = err_of(decode, encode(v))
        assert_kind(e, "DecodeError")
      end
      assert.matches("functions are refused", err_of(decode, encode(function() return n end)).message)
    end)
  end)

  describe("values that cannot be encoded", function()
    it("names the path and the type in the sender", function()
      local co = coroutine.create(function() end)
      local e = err_of(encode, { 1, { cb = co } }, "args")
      assert_kind(e, "EncodeError")
      assert.equal("args[2].cb: cannot encode a coroutine", e.message)
      assert.matches("args%[2%]%.cb: cannot encode a coroutine", tostring(e))
      assert.equal("value: cannot encode a coroutine", err_of(encode, co).message)
    end)

    it("quotes keys that are not identifiers and marks other keys", function()
      local co = coroutine.create(function() end)
      assert.equal('value["odd key"]: cannot encode a coroutine', err_of(encode, { ["odd key"] = co }).message)
      assert.equal('value["end"]: cannot encode a coroutine', err_of(encode, { ["end"] = co }).message)
      assert.equal("value[1.5]: cannot encode a coroutine", err_of(encode, { [1.5] = co }).message)
      assert.equal("value[true]: cannot encode a coroutine", err_of(encode, { [true] = co }).message)
      assert.equal("value[<table key>]: cannot encode a coroutine", err_of(encode, { [{}] = co }).message)
      assert.equal("value<key>: cannot encode a coroutine", err_of(encode, { [co] = 1 }).message)
      assert.equal("value<key>.x: cannot encode a coroutine", err_of(encode, { [{ x = co }] = 1 }).message)
      assert.equal("value<metatable>.__index.co: cannot encode a coroutine",
        err_of(encode, setmetatable({}, { __index = { co = co } })).message)
    end)

    it("names upvalues in the path", function()
      local co = coroutine.create(function() end)
      local target = function() return co end
      assert.equal("target<upvalue 'co'>: cannot encode a coroutine", err_of(encode, target, "target").message)
      local tbl = { deep = { co } }
      local g = function() return tbl end
      assert.equal("args[1].fn<upvalue 'tbl'>.deep[1]: cannot encode a coroutine",
        err_of(encode, { { fn = g } }, "args").message)
    end)

    it("refuses foreign userdata, unnamed C functions and handles outside a message", function()
      local f = io.tmpfile()
      local e = err_of(encode, { file = f })
      assert_kind(e, "EncodeError")
      assert.equal("value.file: cannot encode a userdata (FILE*)", e.message)
      f:close()
      local wrapped = coroutine.wrap(function() end)
      e = err_of(encode, { w = wrapped })
      assert.equal("value.w: cannot encode a C function that has no name in package.loaded", e.message)
      local cell = testobj(3)
      e = err_of(encode, { h = cell })
      assert_kind(e, "EncodeError")
      assert.matches("^value%.h: cannot encode a TestObject handle", e.message)
      cell:close()
    end)

    it("leaves the sender usable after an error", function()
      local co = coroutine.create(function() end)
      for _ = 1, 100 do
        local big = {}
        for i = 1, 1000 do big[i] = ("x"):rep(100) end
        big[1001] = co
        pcall(encode, big)
      end
      collectgarbage()
      assert.equal(3, rt { 1, 2, 3 }[3])
    end)
  end)

  describe("hostile input", function()
    local samples = {
      nil, true, 42, -7, 1000, math.mininteger, 0.5, 1 / 3, "str", ("long"):rep(20),
      { 1, 2, { 3, { 4 } }, x = "y", [2.5] = false },
      setmetatable({ 1 }, { __index = { a = 1 } }),
    }
    local cyc = { 1 }
    cyc.me = cyc
    samples[#samples + 1] = cyc
    local function assert_decode_error(s, opts)
      local ok, e = pcall(decode, s, opts)
      assert(not ok, "decoded a malformed message: " .. ("%q"):format(s))
      assert(mp.iserror(e, "DecodeError"), tostring(e))
      return e
    end

    it("refuses every truncation of a valid message", function()
      local n = 0
      for i = 1, #samples + 1 do
        local s = encode(samples[i])
        for len = 0, #s - 1 do
          assert_decode_error(s:sub(1, len))
          n = n + 1
        end
        assert.is_not_nil(decode(s) ~= nil or samples[i] == nil)
      end
      assert.is_true(n > 100)
    end)

    it("refuses trailing bytes, a wrong magic and an unknown version", function()
      assert_decode_error(encode(1) .. "\0")
      assert.matches("not a corral message", assert_decode_error("\0\1\0").message)
      assert.matches("version", assert_decode_error("\203\9\0").message)
      assert_decode_error("")
      assert_decode_error(42)
    end)

    it("refuses lengths and counts larger than the message before allocating", function()
      local huge = varint(2 ^ 40)
      assert.matches("exceeds", assert_decode_error(HDR .. "\6" .. huge .. "abc").message)
      assert.matches("exceeds", assert_decode_error(HDR .. "\7" .. huge .. "\0").message)
      assert.matches("exceeds", assert_decode_error(HDR .. "\7\0" .. huge).message)
      assert.matches("exceeds", assert_decode_error(HDR .. "\12" .. huge .. "x").message)
      assert_decode_error(HDR .. "\6" .. varint(2 ^ 63) .. "x")
      assert_decode_error(HDR .. "\3" .. ("\255"):rep(11))
      assert_decode_error(HDR .. "\10\255\255\255\255abc", { trusted = true })
      assert_decode_error(HDR .. "\16" .. huge, { trusted = true })
    end)

    it("refuses bad references, stray tags and bad keys", function()
      assert_decode_error(HDR .. "\9\0")                -- reference to nothing
      assert_decode_error(HDR .. "\7\1\0\9\1")          -- reference to the future
      assert_decode_error(HDR .. "\11\0\1")             -- upvalue link outside a function
      assert_decode_error(HDR .. "\15\0")               -- handle without a section
      assert_decode_error(HDR .. "\16\1\1\16")          -- handles refused
      assert_decode_error(HDR .. "\17")                 -- unknown tag
      assert_decode_error(HDR .. "\7\0\1\0\1")          -- nil key
      assert_decode_error(HDR .. "\7\0\1\4\0\0\0\0\0\0\248\127\1") -- NaN key
      assert_decode_error(HDR .. "\8\0\0\128")          -- metatable that is no table
      assert_decode_error(HDR .. "\13\3abc")            -- unknown registered metatable
      assert_decode_error(HDR .. "\12\4_G\0x")          -- unknown name
    end)

    it("refuses nesting deeper than the limit without overflowing the C stack", function()
      local e = assert_decode_error(HDR .. ("\7\1\0"):rep(100000) .. "\0")
      assert.matches("nested", e.message)
      e = assert_decode_error(HDR .. ("\8\0\0"):rep(100000))
      assert.matches("nested", e.message)
    end)

    it("never fails otherwise on random bytes or single-byte mutations", function()
      math.randomseed(20240601)
      local ok_count = 0
      for _ = 1, 5000 do
        local n = math.random(0, 40)
        local b = {}
        for j = 1, n do b[j] = string.char(math.random(0, 255)) end
        local s = HDR .. table.concat(b)
        local ok, e = pcall(decode, s)
        if ok then ok_count = ok_count + 1 else assert(mp.iserror(e, "DecodeError"), tostring(e)) end
      end
      local base = encode { 1, 2, { 3, "four", x = { y = 0.5 } }, "str", setmetatable({}, { __index = { a = 1 } }) }
      for i = 3, #base do
        for v = 0, 255 do
          local s = base:sub(1, i - 1) .. string.char(v) .. base:sub(i + 1)
          local ok, e = pcall(decode, s)
          if ok then ok_count = ok_count + 1 else assert(mp.iserror(e, "DecodeError"), tostring(e)) end
        end
      end
      assert.is_true(ok_count > 0)
    end)

    it("accepts names of loaded tables without functions, never loading a module", function()
      local s = encode(setmetatable({}, mp.Process))
      assert.equal(mp.Process, getmetatable(decode(s)))
      assert.is_nil(package.loaded["codec_spec.never"])
      local e = assert_decode_error(HDR .. "\12\16codec_spec.never")
      assert.matches("unknown module", e.message)
      assert.is_nil(package.loaded["codec_spec.never"])
      assert_decode_error(HDR .. "\12\8_G\0print")
    end)
  end)

  describe("through processes", function()
    after_each(function()
      H.cleanup()
      H.assert_no_children()
    end)

    local function read_file(path)
      local f = assert(io.open(path, "rb"))
      local s = f:read("a")
      f:close()
      return s
    end

    local function run(method, target, args)
      local p = mp.get_context(method).Process { target = target, args = args }
      p:start()
      assert.is_true(p:join(60))
      return p.exitcode
    end

    it("runs closures with table, function and number upvalues the same under spawn and fork", function()
      local out = H.script("")
      local io_open, concat, tostr = io.open, table.concat, tostring
      local cfg = { scale = 3, names = { "a", "b" } }
      cfg.self = cfg
      local offset = 7
      local function helper(x) return x * cfg.scale + offset end
      local fmt = string.format
      local function counter()
        local c = 0
        return function() c = c + 1; return c end, function() return c end
      end
      local inc, get = counter()
      local target = function(n, extra)
        inc(); inc()
        local f = io_open(out, "w")
        f:write(concat({ helper(n), #cfg.names, cfg.names[2], tostr(cfg.self == cfg), fmt("%.1f", extra.x),
                         get(), tostr(extra.me == extra) }, ","))
        f:close()
      end
      local extra = { x = 2.5 }
      extra.me = extra
      local results = {}
      for _, method in ipairs { "fork", "spawn" } do
        os.remove(out)
        assert.equal(0, run(method, target, { 10, extra }))
        results[method] = read_file(out)
      end
      assert.equal("37,2,b,true,2.5,2,true", results.fork)
      assert.equal(results.fork, results.spawn)
      assert.equal(0, get()) -- the parent's closures are untouched
    end)

    it("rebinds _ENV to the child's globals under both methods", function()
      local out = H.script("")
      local target = G([[
        local out = ...
        return function(a)
          local f = io.open(out, "w")
          f:write(tostring(_ENV == _G), ",", string.rep(a, 2), ",", type(require("corral").Process))
          f:close()
        end]])(out)
      local results = {}
      for _, method in ipairs { "fork", "spawn" } do
        os.remove(out)
        assert.equal(0, run(method, target, { "ab" }))
        results[method] = read_file(out)
      end
      assert.equal("true,abab,table", results.fork)
      assert.equal(results.fork, results.spawn)
    end)

    it("sends handles as working handles to the same object", function()
      local cell = testobj(1)
      local other = testobj(100)
      local target = function(c, o, same)
        c:set(c:get() + 41)
        o:set(o:get() + (same == c and 1 or 0))
      end
      for _, method in ipairs { "fork", "spawn" } do
        cell:set(1)
        other:set(100)
        assert.equal(0, run(method, target, { cell, other, cell }))
        assert.equal(42, cell:get())
        assert.equal(101, other:get())
      end
      cell:close()
      other:close()
    end)

    it("raises an EncodeError naming the path in the parent under spawn", function()
      local co = coroutine.create(function() end)
      local target = function() return co end
      local p = mp.get_context("spawn").Process { target = target, args = { 1 } }
      local e = err_of(p.start, p)
      assert_kind(e, "EncodeError")
      assert.matches("<upvalue 'co'>: cannot encode a coroutine", e.message, 1, true)
      p = mp.get_context("spawn").Process { target = function() end, args = { 1, { cb = co } } }
      e = err_of(p.start, p)
      assert.matches("args[2].cb: cannot encode a coroutine", e.message, 1, true)
    end)

  end)
end)
