-- corral.progress: a one-line progress bar for work counted in items, as a
-- Pool's map and imap draw it with {progress = true}.
--
--   local progress = require "corral.progress"
--   local bar = progress.new{ total = 100, label = "files", stream = io.stderr }
--   bar:advance(n)  -- n more items done (default 1)
--   bar:fail(n)     -- n more items ended without a result (default 1):
--                   -- they count as done, and the bar shows how many failed
--   bar:tick()      -- redraws when REDRAW seconds passed since the last
--                   -- drawing, whether or not anything advanced
--   bar:finish()    -- the last drawing, with the total elapsed time, then a
--                   -- newline; once
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
-- With a total the line reads "[#####.....] done/total rate/s ETA Ns", with
-- " (N failed)" after the count once some failed; the last drawing reads
-- "... rate/s in 12.3s". The line is redrawn at most every REDRAW seconds,
-- and always when done reaches total; so advance() is cheap enough to call
-- once per item. tick(), called while waiting, redraws it even when
-- nothing ended. A bar that does not draw only counts.
--
-- On a terminal (io.stderr or io.stdout) the bar keeps the terminal's last
-- row to itself: the rows above it are made the scrolling region, and each
-- drawing goes to the last row and puts the cursor back where it was. So
-- what other processes write meanwhile (a Pool's workers) scrolls above
-- the bar and never breaks its line. finish() gives the row back and draws
-- the last line where the output stands. On another stream (or a terminal
-- of fewer than 3 rows) the line is redrawn in place: "\r", the line, then
-- clear to the end of the line.
local _, core = ...

local setmetatable, type, tostring, mtype, pcall = setmetatable, type, tostring, math.type, pcall
local max, floor, ceil = math.max, math.floor, math.ceil
local now, isatty, term_rows = core.time, core._isatty, core._term_rows

local REDRAW = 0.1 -- seconds between two drawings
local WIDTH = 30   -- cells of the bar

local Progress = {}
Progress.__index = Progress
Progress.__name = "corral.Progress"

-- Whether to draw on stream (a terminal, or a stream the caller chose to
-- draw on), and the terminal's fd.
local function draws_on(stream)
  if stream == io.stderr then return isatty(2), isatty(2) and 2 or nil end
  if stream == io.stdout then return isatty(1), isatty(1) and 1 or nil end
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
  local on, fd = draws_on(stream)
  return setmetatable({ total = total, label = label, stream = stream, done = 0, failed = 0, t0 = now(), last = 0,
                        on = on, fd = fd, rows = nil, pid = core.getpid(), finished = false }, Progress)
end

-- Draws the line; `final`: with the elapsed time instead of the ETA.
function Progress:_draw(t, final)
  self.last = t
  local done, total = self.done, self.total
  local elapsed = t - self.t0
  local rate = done / max(elapsed, 1e-9)
  local failed = self.failed > 0 and (" (%d failed)"):format(self.failed) or ""
  local line
  if total then
    local fill = floor(WIDTH * done / max(total, 1))
    if fill > WIDTH then fill = WIDTH end
    line = ("[%s%s] %d/%d%s %.1f/s"):format(("#"):rep(fill), ("."):rep(WIDTH - fill), done, total, failed, rate)
    if not final then
      local eta = rate > 0 and max(total - done, 0) / rate or 0
      line = line .. (" ETA %ds"):format(ceil(eta))
    end
  else
    line = ("%d done%s %.1f/s"):format(done, failed, rate)
  end
  if final then line = line .. (" in %.1fs"):format(elapsed) end
  if self.label then line = self.label .. " " .. line end
  local stream = self.stream
  local rows = not final and self.fd and term_rows(self.fd)
  if rows and rows >= 3 then
    local out = ""
    if self.rows ~= rows then -- the first drawing, or the terminal was resized
      -- a row for the bar below the cursor (scrolling if the cursor is on the
      -- last one), then the rows above it scroll on their own
      if not self.rows then out = "\n\27[A" end
      out = out .. ("\0277\27[1;%dr\0278"):format(rows - 1)
      self.rows = rows
    end
    stream:write(out .. ("\0277\27[%d;1H\27[2K%s\0278"):format(rows, line))
  else
    self:_unpin()
    stream:write("\r" .. line .. "\27[K")
  end
  stream:flush()
end

-- Gives the terminal's last row back, if the bar holds it.
function Progress:_unpin()
  local rows = self.rows
  if not rows then return end
  self.rows = nil
  self.stream:write(("\0277\27[%d;1H\27[2K\27[r\0278"):format(rows))
end

-- advance(n): n more items done (default 1); redraws when it is time.
function Progress:advance(n)
  self.done = self.done + (n or 1)
  if not self.on then return end
  local t = now()
  if t - self.last < REDRAW and self.done ~= self.total then return end
  self:_draw(t)
end

-- fail(n): n more items (default 1) ended without a result; they count
-- as done.
function Progress:fail(n)
  self.failed = self.failed + (n or 1)
  self:advance(n)
end

-- tick(): redraws when it is time, as after output of other processes.
function Progress:tick()
  if not self.on or self.finished then return end
  local t = now()
  if t - self.last >= REDRAW then self:_draw(t) end
end

-- finish(): draws the final count and the elapsed time, and ends the line;
-- later calls do nothing.
function Progress:finish()
  if not self.on or self.finished then return end
  self.finished = true
  self:_draw(now(), true)
  self.stream:write("\n")
end

-- A bar dropped unfinished gives the terminal's row back (in the process
-- that drew it: not in a forked copy).
function Progress.__gc(self)
  if self.rows and self.pid == core.getpid() then pcall(self._unpin, self) end
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
  REDRAW = REDRAW,
}
