-- Seed 001_a2c236ba738e7e5f.txt, "#### 方式二：传递target函数".
-- Teaches: a Process runs a target function with arguments;
-- mp.current_process() tells the child who it is.
-- Lua has no keyword arguments: the original's kwargs={"name":…, "delay":…}
-- becomes one table argument, which the target unpacks.
-- Sleeps are scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/process/target_function.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function task(name, delay)
  if type(name) == "table" then -- called with "keyword" arguments
    name, delay = name.name, name.delay
  end
  print(("任务 %s 开始执行，进程ID: %d"):format(name, mp.current_process().pid))
  pace.sleep(delay)
  print(("任务 %s 执行结束，进程ID: %d"):format(name, mp.current_process().pid))
end

-- create the processes: positional arguments, then a table of named ones
local process1 = mp.Process{ target = task, args = { "Task-1", 2 } }
local process2 = mp.Process{ target = task, args = { { name = "Task-2", delay = 3 } } }

process1:start()
process2:start()

process1:join()
process2:join()

print("所有任务执行完毕")
