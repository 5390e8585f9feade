-- Writes the seed corpus of the codec fuzzer: encodings of varied values,
-- one file each, plus a few malformed messages.
--   lua5.4 fuzz/make_corpus.lua [BUILD_DIR [OUT_DIR]]   (build, fuzz/corpus)
local build = arg[1] or "build"
local out = arg[2] or "fuzz/corpus"
package.cpath = build .. "/?.so;" .. package.cpath
local mp = require "corral"

local values = {}
local function add(name, v) values[#values + 1] = { name, v } end

add("nil", nil)
add("true", true)
add("false", false)
for _, i in ipairs { 0, 1, 127, 128, -1, -32, -33, 300, -300, 2 ^ 31 | 0, math.maxinteger, math.mininteger } do
  add("int_" .. tostring(i), i)
end
for name, f in pairs { zero = 0.0, negzero = -0.0, half = 0.5, tenth = 0.1, inf = 1 / 0, neginf = -1 / 0,
                       nan = 0 / 0, big = 1e300, tiny = 5e-324, one = 1.0 } do
  add("float_" .. name, f)
end
add("str_empty", "")
add("str_short", "hello")
add("str_31", ("a"):rep(31))
add("str_32", ("b"):rep(32))
add("str_binary", "\0\1\2\255\254 zero\0inside")
add("str_long", ("0123456789"):rep(50))
add("array", { 1, 2, 3, "four", 5.5, true, false })
add("holes", { 1, nil, 3, nil, nil, 6 })
add("record", { id = 1, name = "alice", tags = { "x", "y" }, score = 0.75, ok = true })
add("mixed_keys", { [1.5] = "f", [true] = "t", [-7] = "neg", ["odd key"] = 1, [{}] = "tk" })
local shared = { "shared" }
add("shared", { a = shared, b = shared, c = { shared } })
local cyc = { name = "cycle" }
cyc.self = cyc
cyc.list = { cyc, cyc }
add("cycle", cyc)
local nest = {}
local c = nest
for _ = 1, 60 do c.next = {}; c = c.next end
add("nested", nest)
local big = {}
for i = 1, 300 do big[i] = i * 7 end
for i = 1, 200 do big["k" .. i] = i end
add("big", big)
add("globals", { env = _G })
add("named_module", setmetatable({}, { __index = string }))
add("named_class", setmetatable({ x = 1 }, mp.Process))
add("error_object", select(2, pcall(mp.encode, coroutine.create(print))))
add("metatable_by_value", setmetatable({ 1 }, { __name = "NotRegistered", __index = { y = 2 } }))
local up = { 1, 2 }
add("function", function() return up end)
add("cfunction", { print = print, fmt = string.format })

os.execute("mkdir -p '" .. out .. "'")
local n = 0
for _, nv in ipairs(values) do
  local s = mp.encode(nv[2])
  local f = assert(io.open(out .. "/" .. nv[1]:gsub("[^%w_]", "_") .. ".bin", "wb"))
  f:write(s)
  f:close()
  n = n + 1
end
-- Malformed: truncated, wrong version, huge declared lengths.
local bad = {
  bad_truncated = mp.encode({ 1, 2, { 3 } }):sub(1, 6),
  bad_version = "\203\9\0",
  bad_strlen = "\203\1\6\255\255\255\255\15abc",
  bad_tablen = "\203\1\7\255\255\255\255\15\0",
  bad_ref = "\203\1\9\5",
  bad_trailing = mp.encode(1) .. "x",
}
for name, s in pairs(bad) do
  local f = assert(io.open(out .. "/" .. name .. ".bin", "wb"))
  f:write(s)
  f:close()
  n = n + 1
end
print(("wrote %d seeds to %s"):format(n, out))
