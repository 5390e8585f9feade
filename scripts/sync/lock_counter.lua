-- Seed 001_a2c236ba738e7e5f.txt, "### 1. 锁（Lock）".
-- Teaches: two ways to hold a Lock around a critical section: acquire and
-- release (Python's try/finally: pcall, then release), and lock:guard()
-- in a to-be-closed variable (Python's `with lock:`). 100000 increments and
-- 100000 decrements of a shared counter end at 0.
-- What the original got wrong: its `count` is a plain global, copied into
-- each child; the parent prints 0 whatever the children do. The port
-- shares the counter (a Value, whose own lock is not used).
--   corral scripts/sync/lock_counter.lua
local mp = require "corral"

local lock = mp.Lock()
local count = mp.Value("i", 0, { lock = false })

local function increment()
  for _ = 1, 100000 do
    lock:acquire()
    local ok, err = pcall(function() count.value = count.value + 1 end)
    lock:release()
    if not ok then error(err, 0) end
  end
end

local function decrement()
  for _ = 1, 100000 do
    local _ <close> = lock:guard() -- released at the end of the block, as `with lock:`
    count.value = count.value - 1
  end
end

local process1 = mp.Process{ target = increment }
local process2 = mp.Process{ target = decrement }

process1:start()
process2:start()

process1:join()
process2:join()

print(("最终结果: %d"):format(count.value)) -- expected: 0
