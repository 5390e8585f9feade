-- Seed 004_75a4847c33e52956.txt, "### 进程通信 IPC".
-- Teaches: two children talk through a Queue made by their parent: one
-- puts a message naming its pid, the other gets it.
-- The original calls set_start_method("fork") (for macOS, where Python's
-- spawn re-runs the script); a corral child never re-runs it, so the port
-- works under either method. Like the original it does not join: the main
-- script's end waits for non-daemon children, in corral as in Python.
--   corral scripts/queue/ipc_two_children.lua
local mp = require "corral"

local function task1(q)
  local process = mp.current_process()
  q:put(("子进程 %d存的数据"):format(process.pid))
end

local function task2(q)
  local process = mp.current_process()
  -- e.g. 子进程 84474 取数据：子进程 84473存的数据
  print(("子进程 %d 取数据：%s"):format(process.pid, q:get()))
end

local queue = mp.Queue()
local p1 = mp.Process{ target = task1, args = { queue } }
local p2 = mp.Process{ target = task2, args = { queue } }
-- start both children
p1:start()
p2:start()
