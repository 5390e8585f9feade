-- corral.progress: the lines a bar draws on a stream the caller gives it.
-- How a Pool's map draws one on a terminal is in pool_terminal_spec.lua.
local H = require "spec.helper"
local progress = require "corral.progress"

-- A stream that keeps what is written to it.
local function sink()
  local s = { text = "", flushes = 0 }
  function s:write(x) self.text = self.text .. x end
  function s:flush() self.flushes = self.flushes + 1 end
  return s
end

-- The lines drawn so far, without the "\r" before and the clear after each.
local function drawings(s)
  local out = {}
  for line in s.text:gmatch("\r([^\r\n]*)\27%[K") do out[#out + 1] = line end
  return out
end

describe("progress (" .. H.method .. ")", function()
  it("draws done/total, rate and ETA, the last drawing when done reaches total", function()
    local s = sink()
    local bar = progress.new{ total = 4, stream = s }
    bar:advance()    -- the first drawing comes at once
    bar:advance(3)   -- 4/4: drawn however soon it comes
    local d = drawings(s)
    assert.are.equal(2, #d)
    assert.matches("^%[#######%.+%] 1/4 [%d%.]+/s ETA %d+s$", d[1])
    assert.matches("^%[" .. ("#"):rep(30) .. "%] 4/4 [%d%.]+/s ETA 0s$", d[2])
    assert.are.equal(2, s.flushes)
  end)

  it("finish draws once more and ends the line, once", function()
    local s = sink()
    local bar = progress.new{ total = 2, stream = s }
    bar:advance(2)
    bar:finish()
    bar:finish()
    assert.are.equal(2, #drawings(s))
    assert.are.equal("\n", s.text:sub(-1))
    assert.are.equal(1, select(2, s.text:gsub("\n", "")))
  end)

  it("draws a label before the bar, and only a count and rate without a total", function()
    local s = sink()
    local bar = progress.new{ label = "files", stream = s }
    bar:advance(5)
    bar:finish()
    local d = drawings(s)
    assert.matches("^files 5 done [%d%.]+/s$", d[1])
    assert.matches("^files 5 done [%d%.]+/s in [%d%.]+s$", d[2])
  end)

  -- A bar of 4 items drawn on a sink, its first item done.
  local function started_bar()
    local s = sink()
    local bar = progress.new{ total = 4, stream = s }
    bar:advance()
    return s, bar
  end

  it("shows failed items, and ends with the total elapsed time", function()
    local s, bar = started_bar()
    bar:fail()
    bar:advance(2)
    bar:finish()
    local d = drawings(s)
    assert.matches("^%[#+%] 4/4 %(1 failed%) [%d%.]+/s ETA 0s$", d[#d - 1])
    assert.matches("^%[#+%] 4/4 %(1 failed%) [%d%.]+/s in [%d%.]+s$", d[#d])
  end)

  it("tick redraws once REDRAW seconds passed, even with nothing done", function()
    local s, bar = started_bar()
    bar:tick()
    assert.are.equal(1, #drawings(s)) -- too soon
    local t = H.mp.time()
    H.wait_until(function() return H.mp.time() - t >= progress.REDRAW end)
    bar:tick()
    assert.are.equal(2, #drawings(s))
    assert.matches(" 1/4 ", drawings(s)[2])
  end)

  it("redraws at most every 0.1 s before the end", function()
    local s = sink()
    local t0 = H.mp.time()
    local bar = progress.new{ total = 1000, stream = s }
    for _ = 1, 999 do bar:advance() end
    local n = #drawings(s)
    -- one at the first item, then at most one per 0.1 s that the loop took
    assert.is_true(n >= 1 and n <= 2 + (H.mp.time() - t0) / 0.1, tostring(n))
    bar:advance()
    assert.are.equal(n + 1, #drawings(s))
    assert.matches(" 1000/1000 ", drawings(s)[n + 1])
  end)

  it("rejects a total that is not a count, and a label that is not a string", function()
    local ok, e = pcall(progress.new, { total = -1 })
    assert.is_false(ok)
    assert.is_true(H.mp.iserror(e, "ValueError"), tostring(e))
    ok, e = pcall(progress.new, { total = 1.5 })
    assert.is_true(H.mp.iserror(e, "ValueError"), tostring(e))
    ok, e = pcall(progress.new, { label = 3 })
    assert.is_true(H.mp.iserror(e, "ValueError"), tostring(e))
  end)
end)
