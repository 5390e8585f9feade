-- Seed 004_75a4847c33e52956.txt, "## 进程".
-- Teaches: mp.current_process() in the child gives its pid; mp.getppid()
-- its parent's, which is the main process's mp.getpid().
--   corral scripts/process/current_process.lua
local mp = require "corral"

local function task(name)
  local process = mp.current_process()
  -- step 1: the child's pid and its parent's pid
  print(("子进程的 id: %d, 子进程父 id: %d"):format(process.pid, mp.getppid()))
end

local p = mp.Process{ target = task, args = { "子进程" } }
p:start()
p:join()
-- step 2: the main process's pid
print(("主进程 id, %d"):format(mp.getpid()))
