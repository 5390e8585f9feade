-- Seed 001_a2c236ba738e7e5f.txt, "### 1. 基本使用" (进程池).
-- Teaches: a Pool of 3 workers runs tasks submitted with apply_async; each
-- AsyncResult's get() waits for that task's return value, so the results
-- print in the order asked for, whatever order the tasks end in.
-- Python's `with Pool(...) as pool:` becomes a to-be-closed variable, which
-- terminates the pool at the end of the block, as Python's does. Sleeps
-- are scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/pool/apply_async.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function task(name, delay)
  print(("任务 %s 开始执行，进程ID: %d"):format(name, mp.current_process().pid))
  pace.sleep(delay)
  print(("任务 %s 执行结束，进程ID: %d"):format(name, mp.current_process().pid))
  return ("任务 %s 完成"):format(name)
end

do
  -- a pool of at most 3 worker processes
  local pool <close> = mp.Pool(3)
  -- submit the tasks
  local result1 = pool:apply_async(task, { "Task-1", 2 })
  local result2 = pool:apply_async(task, { "Task-2", 3 })
  local result3 = pool:apply_async(task, { "Task-3", 1 })

  -- get their results
  print(("任务1结果: %s"):format(result1:get()))
  print(("任务2结果: %s"):format(result2:get()))
  print(("任务3结果: %s"):format(result3:get()))
end

print("所有任务执行完毕")
