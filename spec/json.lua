-- A strict JSON reader for the specs (RFC 8259: no comments, no trailing
-- commas), and the reader of a corral trace file: the array form of the
-- Trace Event Format as corral writes it, "[" then events each followed
-- by ",\n", with no closing bracket, which a viewer completes by dropping
-- the last comma and adding "]".
local J = {}

local ssub, sfind = string.sub, string.find
local utf8char = utf8.char

local function fail(s, i, what)
  local line = select(2, ssub(s, 1, i):gsub("\n", "")) + 1
  error(("JSON: %s at byte %d (line %d): %q"):format(what, i, line, ssub(s, i, i + 20)), 0)
end

local function skip(s, i)
  return (sfind(s, "[^ \t\r\n]", i)) or #s + 1
end

local value

local ESC = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function str(s, i) -- s[i] is the opening quote
  local out, j = {}, i + 1
  while true do
    local k = sfind(s, '["\\%z\1-\31]', j)
    if not k then fail(s, i, "unterminated string") end
    out[#out + 1] = ssub(s, j, k - 1)
    local c = ssub(s, k, k)
    if c == '"' then return table.concat(out), k + 1 end
    if c ~= "\\" then fail(s, k, "control character in string") end
    local e = ssub(s, k + 1, k + 1)
    if ESC[e] then
      out[#out + 1] = ESC[e]
      j = k + 2
    elseif e == "u" then
      local hex = ssub(s, k + 2, k + 5)
      if not hex:match("^%x%x%x%x$") then fail(s, k, "bad \\u escape") end
      local cp = tonumber(hex, 16)
      j = k + 6
      if cp >= 0xD800 and cp <= 0xDBFF and ssub(s, j, j + 1) == "\\u" then
        local lo = tonumber(ssub(s, j + 2, j + 5), 16)
        if lo and lo >= 0xDC00 and lo <= 0xDFFF then
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
          j = j + 6
        end
      end
      out[#out + 1] = utf8char(cp)
    else
      fail(s, k, "bad escape")
    end
  end
end

-- -? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][-+]?[0-9]+)?
local function num(s, i)
  local j = ssub(s, i, i) == "-" and i + 1 or i
  local _, e = sfind(s, "^0", j)
  if not e then _, e = sfind(s, "^[1-9]%d*", j) end
  if not e then fail(s, i, "bad number") end
  j = e + 1
  _, e = sfind(s, "^%.%d+", j)
  if e then j = e + 1 elseif ssub(s, j, j) == "." then fail(s, j, "bad fraction") end
  _, e = sfind(s, "^[eE][-+]?%d+", j)
  if e then j = e + 1 elseif sfind(s, "^[eE]", j) then fail(s, j, "bad exponent") end
  return tonumber(ssub(s, i, j - 1)), j
end

function value(s, i)
  i = skip(s, i)
  local c = ssub(s, i, i)
  if c == "{" then
    local t = {}
    i = skip(s, i + 1)
    if ssub(s, i, i) == "}" then return t, i + 1 end
    while true do
      if ssub(s, i, i) ~= '"' then fail(s, i, "expected a key") end
      local k
      k, i = str(s, i)
      i = skip(s, i)
      if ssub(s, i, i) ~= ":" then fail(s, i, "expected ':'") end
      t[k], i = value(s, i + 1)
      i = skip(s, i)
      local d = ssub(s, i, i)
      if d == "}" then return t, i + 1 end
      if d ~= "," then fail(s, i, "expected ',' or '}'") end
      i = skip(s, i + 1)
    end
  elseif c == "[" then
    local t, n = {}, 0
    i = skip(s, i + 1)
    if ssub(s, i, i) == "]" then return t, i + 1 end
    while true do
      n = n + 1
      t[n], i = value(s, i)
      i = skip(s, i)
      local d = ssub(s, i, i)
      if d == "]" then return t, i + 1 end
      if d ~= "," then fail(s, i, "expected ',' or ']'") end
      i = skip(s, i + 1)
      if ssub(s, i, i) == "]" then fail(s, i, "trailing comma") end
    end
  elseif c == '"' then
    return str(s, i)
  elseif sfind(s, "^true", i) then
    return true, i + 4
  elseif sfind(s, "^false", i) then
    return false, i + 5
  elseif sfind(s, "^null", i) then
    return J.null, i + 4
  elseif c == "-" or c:match("^%d$") then
    return num(s, i)
  end
  fail(s, i, "unexpected character")
end

J.null = setmetatable({}, { __tostring = function() return "null" end })

-- Decodes the JSON text s; raises on anything that is not exactly one value.
function J.decode(s)
  local v, i = value(s, 1)
  i = skip(s, i)
  if i <= #s then fail(s, i, "text after the value") end
  return v
end

-- The events of the trace file at path, as a viewer reads it. Raises when
-- the file is not "[" followed by events each ending in ",".
function J.read_trace(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  if ssub(s, 1, 2) ~= "[\n" then error("trace: does not start with '[': " .. ssub(s, 1, 40), 0) end
  local body = s:gsub("%s+$", "")
  if body == "[" then return {} end
  if ssub(body, -1) ~= "," then error("trace: the last event does not end with ','", 0) end
  return J.decode(ssub(body, 1, -2) .. "]")
end

return J
