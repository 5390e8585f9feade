-- corral.progress: a one-line progress bar for work counted in items, as a
-- Pool's map and imap draw it with {progress = true}.
--
--   local progress = require "corral.progress"
--   local bar = progress.new{ total = 100, label = "files", stream = io.stderr }
--   bar:advance(n)  -- n more items done (default 1)
--   bar:finish()    -- the last drawing, then a newline; once
--
-- new{} takes, all optional:
--   total   how many items there are; without it the bar shows only the
--           count and the rate ("17 done 8.5/s")
--   label   a word drawn before the bar
--   stream  where to draw: a file handle, or any value with write and flush
--           methods. Default io.stderr. io.stderr and io.stdout are drawn on
--           only when they are a terminal; any other stream is always drawn
--           on, as the caller chose it.
--
-- With a total the line reads "[#####.....] done/total rate/s ETA Ns". The
-- line is redrawn in place ("\r", then clear to the end of the line) at most
-- every REDRAW seconds, and always when done reaches total; so advance() is
-- cheap enough to call once per item. A bar that does not draw only counts.
local _, core = ...

local setmetatable, type, tostring, mtype = setmetatable, type, tostring, math.type
local max, floor, ceil = math.max, math.floor, math.ceil
local now, isatty = core.time, core._isatty

local REDRAW = 0.1 -- seconds between two drawings
local WIDTH = 30   -- cells of the bar

local Progress = {}
Progress.__index = Progress
Progress.__name = "corral.Progress"

-- Whether stream is a terminal, or a stream the caller chose to draw on.
local function draws_on(stream)
  if stream == io.stderr then return isatty(2) end
  if stream == io.stdout then return isatty(1) end
  return true
end

local function new(opts)
  opts = opts or {}
  local total, label, stream = opts.total, opts.label, opts.stream or io.stderr
  if total ~= nil and (mtype(total) ~= "integer" or total < 0) then
    core._raise("ValueError", "progress total must be an integer >= 0, got " .. tostring(total), 2)
  end
  if label ~= nil and type(label) ~= "string" then
    core._raise("ValueError", "progress label must be a string", 2)
  end
  return setmetatable({ total = total, label = label, stream = stream, done = 0, t0 = now(), last = 0,
                        on = draws_on(stream), finished = false }, Progress)
end

function Progress:_draw(t)
  self.last = t
  local done, total = self.done, self.total
  local rate = done / max(t - self.t0, 1e-9)
  local line
  if total then
    local fill = floor(WIDTH * done / max(total, 1))
    if fill > WIDTH then fill = WIDTH end
    local eta = rate > 0 and max(total - done, 0) / rate or 0
    line = ("[%s%s] %d/%d %.1f/s ETA %ds"):format(("#"):rep(fill), ("."):rep(WIDTH - fill), done, total, rate,
      ceil(eta))
  else
    line = ("%d done %.1f/s"):format(done, rate)
  end
  if self.label then line = self.label .. " " .. line end
  local stream = self.stream
  stream:write("\r" .. line .. "\27[K")
  stream:flush()
end

-- advance(n): n more items done (default 1); redraws when it is time.
function Progress:advance(n)
  self.done = self.done + (n or 1)
  if not self.on then return end
  local t = now()
  if t - self.last < REDRAW and self.done ~= self.total then return end
  self:_draw(t)
end

-- finish(): draws the final count and ends the line; later calls do nothing.
function Progress:finish()
  if not self.on or self.finished then return end
  self.finished = true
  self:_draw(now())
  self.stream:write("\n")
end

function Progress.__tostring(self)
  return ("Progress (%d/%s)"):format(self.done, self.total and tostring(self.total) or "?")
end

-- ---- a board: several lines redrawn in place ---------------------------------
--
--   local b = progress.board{ stream = io.stderr }
--   b:draw(lines)    -- an array of strings; redrawn at most every REDRAW seconds
--   b:finish(lines)  -- the last drawing; once
--
-- As a bar, it draws only on a stream that draws_on() accepts. (A
-- pipeline draws one line per stage.)
local Board = {}
Board.__index = Board

local function board(opts)
  local stream = (opts or {}).stream or io.stderr
  return setmetatable({ stream = stream, on = draws_on(stream), last = 0, n = 0, finished = false }, Board)
end

function Board:_draw(lines)
  local out = {}
  if self.n > 0 then out[1] = ("\27[%dA"):format(self.n) end -- back to the first line
  for i = 1, #lines do out[#out + 1] = "\r" .. lines[i] .. "\27[K\n" end
  self.stream:write(table.concat(out))
  self.stream:flush()
  self.n = #lines
end

function Board:draw(lines)
  if not self.on or self.finished then return end
  local t = now()
  if t - self.last < REDRAW then return end
  self.last = t
  self:_draw(lines)
end

function Board:finish(lines)
  if not self.on or self.finished then return end
  self.finished = true
  self:_draw(lines)
end

return {
  new = new,
  board = board,
}
