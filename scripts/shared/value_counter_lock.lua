-- Seed 001_a2c236ba738e7e5f.txt, "### 3. 共享内存（Shared Memory）".
-- Teaches: a Value('i') lives in shared memory, so both processes change
-- the same counter; a Lock around each `+= 1` / `-= 1` keeps the 100000
-- increments and 100000 decrements from losing updates: the result is 0.
-- Python's `with lock:` becomes `local _ <close> = lock:guard()`.
--   corral scripts/shared/value_counter_lock.lua
local mp = require "corral"

local function increment(counter, lock)
  for _ = 1, 100000 do
    local _ <close> = lock:guard() -- the lock protects the shared counter
    counter.value = counter.value + 1
  end
end

local function decrement(counter, lock)
  for _ = 1, 100000 do
    local _ <close> = lock:guard()
    counter.value = counter.value - 1
  end
end

-- a shared integer ('i'), and a lock
local counter = mp.Value("i", 0)
local lock = mp.Lock()

local process1 = mp.Process{ target = increment, args = { counter, lock } }
local process2 = mp.Process{ target = decrement, args = { counter, lock } }

process1:start()
process2:start()

process1:join()
process2:join()

print(("最终结果: %d"):format(counter.value)) -- expected: 0
