-- Seed 002_37fd0902249e69e8.txt, "### 加锁后".
-- Teaches: a Lock held across the whole loop makes the two processes run
-- one after the other, so the shared Value always ends at 20.
-- What the original got wrong: it calls `l.accquire()` (misspelt), which
-- raises AttributeError in both children: nothing is added and it prints 0.
-- The port calls acquire(), and keeps the read-pause-write of
-- scripts/sync/value_race.lua so that the two differ only by the lock.
--   corral scripts/sync/value_lock.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function job(v, num, l, go)
  go:wait()
  l:acquire() -- lock
  for _ = 1, 5 do
    local current = v.value
    pace.sleep(0.1) -- no other process can touch v now
    v.value = current + num
  end
  l:release() -- unlock
end

local l = mp.Lock() -- a process lock
local v = mp.Value("i", 0)
local go = mp.Event()
local p1 = mp.Process{ target = job, args = { v, 1, l, go } }
local p2 = mp.Process{ target = job, args = { v, 3, l, go } }
p1:start()
p2:start()
go:set()
p1:join()
p2:join()
print(v.value)
