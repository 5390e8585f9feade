-- Seed 004_75a4847c33e52956.txt, "### 守护进程 Daemon Process".
-- Teaches: a daemon child ends with the main script: the main process
-- prints its line and ends, and the daemon is terminated before it can
-- print "任务结束...". (Zombie and orphan processes, described in the same
-- section, have no code: corral reaps every child and a daemon dies with
-- its parent.) Sleeps are scaled by CORRAL_TIME_SCALE.
--   corral scripts/process/daemon_killed.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function task()
  print("任务开始...")
  pace.sleep(3)
  print("任务结束...")
end

local p = mp.Process{ target = task }
p.daemon = true -- a daemon
p:start()

print("主进程执行完毕...")
-- the script ends here: the daemon is terminated, "任务结束..." never shows
