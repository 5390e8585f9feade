-- Seed 004_75a4847c33e52956.txt, "### join 方法".
-- Teaches: without join the main process goes on at once (its line usually
-- comes first); with join it waits, so the child's lines come first.
-- The original shows the first run and describes the second in a comment;
-- the port runs both. Sleeps are scaled by CORRAL_TIME_SCALE.
--   corral scripts/process/join_order.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function task()
  print("任务开始执行。。。")
  pace.sleep(1)
  print("任务执行结束。。。")
end

print("--- 不调用 join ---")
local p = mp.Process{ target = task }
p:start()
print("主进程执行完毕")
p:join() -- (only so that the two runs do not mix)

print("--- start 之后调用 join ---")
p = mp.Process{ target = task }
p:start()
p:join()
print("主进程执行完毕")
