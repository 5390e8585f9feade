-- Seed 000_8433a834d0ee5e01.txt, "## 为什么要有进程同步？" (the wrong example).
-- Teaches: two processes change one shared counter without a lock; one
-- read-modify-write overwrites the other, so the result is 1 or -1, not 0.
-- What the original got wrong: its `count` is a plain global, which each
-- child copies; the parent's count stays 0 and no race can be seen (the
-- same goes for its "fixed" version). The port shares the counter (a
-- Value) as the text means, and makes the race certain instead of likely:
-- each process reads, then waits at a Barrier until the other has read
-- too (the interleaving a pause would only make probable, on a loaded
-- machine not even that), then writes back. Both writes start from 0, and
-- the last one wins.
--   corral scripts/sync/counter_race.lua
local mp = require "corral"

local count = mp.Value("i", 0)
local both_read = mp.Barrier(2)

local function increase_count()
  local c = count.value -- read
  both_read:wait()      -- the other process reads meanwhile
  count.value = c + 1   -- write back what was read, plus one
end

local function decrease_count()
  local c = count.value
  both_read:wait()
  count.value = c - 1
end

local process1 = mp.Process{ target = increase_count }
local process2 = mp.Process{ target = decrease_count }

process1:start()
process2:start()

process1:join()
process2:join()

print(count.value) -- 1 or -1: one update was lost
