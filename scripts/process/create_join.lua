-- Seed 002_37fd0902249e69e8.txt, "## 1. 多进程的创建".
-- Teaches: Process{target=, args=}, start() and join(): the parent waits
-- for the child, so the child's lines come between the parent's two.
-- Python needs `if __name__ == '__main__':` so that a spawned child does not
-- run the script again; a corral child never re-runs the parent's script
-- (under either start method), so the port needs no guard. join accepts a
-- timeout in seconds as in Python: p:join(5) returns false if still running.
--   corral scripts/process/create_join.lua
local mp = require "corral"

local function example_function(example_parameter)
  print("子进程启动")
  print(example_parameter)
  print("子进程结束")
end

print("父进程启动")
local process = mp.Process{ target = example_function, args = { "example_parameter" } } -- the child
process:start() -- starts the child
process:join()  -- the parent waits here until the child ends
print("父进程结束")
print(("CPU 核心数量: %d，子进程 pid: %d，名称: %s"):format(mp.cpu_count(), process.pid, process.name))
