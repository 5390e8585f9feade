-- Seed 001_a2c236ba738e7e5f.txt, "### 4. 使用apply方法".
-- Teaches: pool:apply blocks until its task is done and returns its result,
-- so the two tasks run one after the other. corral's apply takes the
-- arguments directly: pool:apply(task, "Task-1", 2) (Python's
-- args=("Task-1", 2)). Sleeps are scaled by CORRAL_TIME_SCALE.
--   corral scripts/pool/apply.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function task(name, delay)
  print(("任务 %s 开始执行"):format(name))
  pace.sleep(delay)
  print(("任务 %s 执行结束"):format(name))
  return ("任务 %s 完成"):format(name)
end

do
  local pool <close> = mp.Pool(3)
  -- apply blocks until the task is done
  local result1 = pool:apply(task, "Task-1", 2)
  print(("任务1结果: %s"):format(result1))

  local result2 = pool:apply(task, "Task-2", 3)
  print(("任务2结果: %s"):format(result2))
end

print("所有任务执行完毕")
