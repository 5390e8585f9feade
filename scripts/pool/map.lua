-- Seed 001_a2c236ba738e7e5f.txt, "### 2. 使用map方法批量处理任务".
-- Teaches: pool:map(f, list) runs f on every item over the workers and
-- returns the results in the order of the list. Each item is a pair
-- {name, delay} (the original's tuple). Sleeps are scaled by
-- CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/pool/map.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function task(item)
  local name, delay = item[1], item[2]
  print(("任务 %s 开始执行，进程ID: %d"):format(name, mp.current_process().pid))
  pace.sleep(delay)
  print(("任务 %s 执行结束，进程ID: %d"):format(name, mp.current_process().pid))
  return ("任务 %s 完成"):format(name)
end

-- the tasks
local tasks = {
  { "Task-1", 2 },
  { "Task-2", 3 },
  { "Task-3", 1 },
  { "Task-4", 2 },
}

do
  local pool <close> = mp.Pool(3)
  -- all the tasks at once
  local results = pool:map(task, tasks)

  for _, result in ipairs(results) do
    print(result)
  end
end

print("所有任务执行完毕")
