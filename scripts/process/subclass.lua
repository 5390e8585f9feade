-- Seed 001_a2c236ba738e7e5f.txt, "#### 方式一：继承Process类".
-- Teaches: a process class (Python's subclass of Process): init() keeps
-- the arguments, run() is what the child does; self.pid is the child's pid.
-- Sleeps are scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/process/subclass.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local MyProcess = mp.Process:extend()

function MyProcess:init(name, delay)
  self.name = name
  self.delay = delay
end

function MyProcess:run()
  print(("进程 %s 开始执行，进程ID: %d"):format(self.name, self.pid))
  pace.sleep(self.delay)
  print(("进程 %s 执行结束，进程ID: %d"):format(self.name, self.pid))
end

-- create the process objects
local process1 = MyProcess("Process-1", 2)
local process2 = MyProcess("Process-2", 3)

-- start them
process1:start()
process2:start()

-- wait for both
process1:join()
process2:join()

print("所有进程执行完毕")
