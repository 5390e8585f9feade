-- Seed 001_a2c236ba738e7e5f.txt, "### 3. 使用imap和imap_unordered方法".
-- Teaches: imap gives an iterator over the results in the order of the
-- tasks; imap_unordered gives them as the tasks finish (here the short
-- Task-3 usually comes first). Both hand out one task at a time
-- (chunksize 1, Python's default for imap). Sleeps are scaled by
-- CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/pool/imap.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function task(item)
  local name, delay = item[1], item[2]
  print(("任务 %s 开始执行"):format(name))
  pace.sleep(delay)
  print(("任务 %s 执行结束"):format(name))
  return ("任务 %s 完成"):format(name)
end

local tasks = {
  { "Task-1", 2 },
  { "Task-2", 3 },
  { "Task-3", 1 },
  { "Task-4", 2 },
}

do
  local pool <close> = mp.Pool(3)
  print("=== 使用imap方法 ===")
  -- results in the order the tasks were submitted
  for result in pool:imap(task, tasks, 1) do
    print(("结果: %s"):format(result))
  end

  print("\n=== 使用imap_unordered方法 ===")
  -- results in the order the tasks finish
  for result in pool:imap_unordered(task, tasks, 1) do
    print(("结果: %s"):format(result))
  end
end

print("所有任务执行完毕")
