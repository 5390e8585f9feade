-- Seed 000_8433a834d0ee5e01.txt, "## 使用锁以保证进程安全".
-- Teaches: with a Lock around the read-modify-write, the two processes take
-- turns and the shared counter ends at 0, every run.
-- What the original got wrong: its `count` is a plain global copied into
-- each child, so the 0 it prints says nothing about the lock. The port
-- shares the counter (a Value) and keeps the same pause inside the locked
-- section as scripts/sync/counter_race.lua has, so the two differ only by
-- the lock.
--   corral scripts/sync/counter_lock.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local lock = mp.Lock()
local count = mp.Value("i", 0)
local go = mp.Event()

local function increase_count()
  go:wait()
  lock:acquire() -- take the lock
  local c = count.value
  pace.sleep(0.5)
  count.value = c + 1
  lock:release() -- release it
end

local function decrease_count()
  go:wait()
  lock:acquire()
  local c = count.value
  pace.sleep(0.5)
  count.value = c - 1
  lock:release()
end

local process1 = mp.Process{ target = increase_count }
local process2 = mp.Process{ target = decrease_count }

process1:start()
process2:start()
go:set()

process1:join()
process2:join()

print(count.value) -- now always 0
