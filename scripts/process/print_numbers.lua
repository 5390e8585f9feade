-- Seed 000_8433a834d0ee5e01.txt, "## 使用进程".
-- Teaches: create a Process with a target function, start it, join it.
--   corral scripts/process/print_numbers.lua
local mp = require "corral"

local function print_numbers()
  for i = 0, 4 do
    print(i)
  end
end

-- create a process
local process = mp.Process{ target = print_numbers }
-- start it
process:start()
-- wait for it to end
process:join()

print("进程执行完毕")
