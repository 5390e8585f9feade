-- Seed 001_a2c236ba738e7e5f.txt, "### 4. 共享数组（Array）".
-- Teaches: an Array('i', 10) in shared memory: two processes fill one half
-- each (arr[i] = i * 2), and the parent then reads what they wrote.
-- Lua arrays start at 1: the port prints the original's 0-based indices
-- (arr[0] … arr[9]) and stores index i at arr[i + 1]. Sleeps are scaled by
-- CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/shared/array_fill.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function fill_array(arr, lock, start, stop) -- indices start .. stop-1, as range()
  local _ <close> = lock:guard()
  for i = start, stop - 1 do
    arr[i + 1] = i * 2
    pace.sleep(0.1)
  end
end

local function print_array(arr, lock)
  local _ <close> = lock:guard()
  for i = 0, #arr - 1 do
    print(("arr[%d] = %d"):format(i, arr[i + 1]))
    pace.sleep(0.1)
  end
end

-- a shared array of 10 integers ('i'), and a lock
local arr = mp.Array("i", 10)
local lock = mp.Lock()

local process1 = mp.Process{ target = fill_array, args = { arr, lock, 0, 5 } }
local process2 = mp.Process{ target = fill_array, args = { arr, lock, 5, 10 } }

process1:start()
process2:start()

process1:join()
process2:join()

print_array(arr, lock)

print("所有进程执行完毕")
