-- Seed 001_a2c236ba738e7e5f.txt, "### 4. 守护进程".
-- Teaches: a daemon process runs in the background and is terminated when
-- the main script ends; it needs no join and never stops by itself.
-- Sleeps are scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua); how many
-- heartbeat lines appear (about five) depends on timing, as in Python.
--   corral scripts/process/daemon_heartbeat.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function daemon_task()
  while true do
    print("守护进程运行中...")
    pace.sleep(1)
  end
end

-- create the daemon process
local daemon_process = mp.Process{ target = daemon_task }
daemon_process.daemon = true -- a daemon

daemon_process:start()

-- the main process works for 5 seconds, then ends
print("主线程开始执行")
pace.sleep(5)
print("主线程执行结束")
-- no non-daemon process is left: the daemon is terminated with the script
