-- Seed 001_a2c236ba738e7e5f.txt, "### 6. 栅栏（Barrier）".
-- Teaches: a Barrier(3) holds each process until all three have arrived:
-- every "到达栅栏" line comes before any "继续执行" line.
-- Sleeps are scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/sync/barrier_tasks.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

-- a barrier for 3 processes
local barrier = mp.Barrier(3)

local function task(name, delay)
  print(("任务 %s 开始执行"):format(name))
  pace.sleep(delay)
  print(("任务 %s 到达栅栏"):format(name))
  barrier:wait() -- until all three are here
  print(("任务 %s 继续执行"):format(name))
end

local process1 = mp.Process{ target = task, args = { "Task-1", 1 } }
local process2 = mp.Process{ target = task, args = { "Task-2", 2 } }
local process3 = mp.Process{ target = task, args = { "Task-3", 3 } }

process1:start()
process2:start()
process3:start()

process1:join()
process2:join()
process3:join()

print("所有任务执行完毕")
