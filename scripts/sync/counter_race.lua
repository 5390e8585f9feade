-- Seed 000_8433a834d0ee5e01.txt, "## 为什么要有进程同步？" (the wrong example).
-- Teaches: two processes change one shared counter without a lock; one
-- read-modify-write overwrites the other, so the result is 1 or -1, not 0.
-- What the original got wrong: its `count` is a plain global, which each
-- child copies; the parent's count stays 0 and no race can be seen (the
-- same goes for its "fixed" version). The port shares the counter (a
-- Value) as the text means, and makes the race visible: each process
-- reads, pauses (a scaled sleep, the yield point), then writes back, and
-- both start together at an Event (a process takes longer to start than a
-- thread, which the pause would not cover under a small CORRAL_TIME_SCALE).
--   corral scripts/sync/counter_race.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local count = mp.Value("i", 0)
local go = mp.Event()

local function increase_count()
  go:wait()
  local c = count.value -- read
  pace.sleep(0.5)       -- the other process runs meanwhile
  count.value = c + 1   -- write back what was read, plus one
end

local function decrease_count()
  go:wait()
  local c = count.value
  pace.sleep(0.5)
  count.value = c - 1
end

local process1 = mp.Process{ target = increase_count }
local process2 = mp.Process{ target = decrease_count }

process1:start()
process2:start()
go:set()

process1:join()
process2:join()

print(count.value) -- may well not be 0
