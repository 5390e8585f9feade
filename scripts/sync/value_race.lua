-- Seed 002_37fd0902249e69e8.txt, "### 不加锁的情况" (the wrong example).
-- Teaches: two processes add 1 and 3, five times each, to one shared Value
-- without a lock; in theory 20, in fact less: updates are lost.
-- A Value's own lock guards each read and each write, not the `+=` between
-- them. In the original the window between read and write is a few
-- bytecodes, so most runs print 20 anyway; the port reads, pauses (the
-- scaled sleep the original has before the update, moved into the window),
-- then writes, and both processes start together at an Event, so the lost
-- updates show on every run.
--   corral scripts/sync/value_race.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function job(v, num, go)
  go:wait()
  for _ = 1, 5 do -- five times
    local current = v.value
    pace.sleep(0.1) -- the processes fight over v in this 0.1 s
    v.value = current + num
  end
end

local v = mp.Value("i", 0) -- shared, starts at 0
local go = mp.Event()
local p1 = mp.Process{ target = job, args = { v, 1, go } }
local p2 = mp.Process{ target = job, args = { v, 3, go } }
p1:start()
p2:start()
go:set()
p1:join()
p2:join()
print(v.value) -- 20 in theory; in fact less
