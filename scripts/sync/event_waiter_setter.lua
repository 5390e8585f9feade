-- Seed 001_a2c236ba738e7e5f.txt, "### 4. 事件（Event）".
-- Teaches: a waiter blocks on event:wait() until the setter calls
-- event:set(); the Event is an upvalue of both targets (the original's
-- module-level global), which corral sends to the children as a handle.
-- The sleep is scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
-- (scripts/sync/event_wait_set.lua ports the same lesson from seed 000.)
--   corral scripts/sync/event_waiter_setter.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

-- the event object
local event = mp.Event()

local function waiter()
  print("等待者: 等待事件发生...")
  event:wait() -- until the event is set
  print("等待者: 事件已发生，继续执行")
end

local function setter()
  print("设置者: 准备触发事件")
  pace.sleep(3) -- getting ready
  event:set()
  print("设置者: 事件已触发")
end

local waiter_process = mp.Process{ target = waiter }
local setter_process = mp.Process{ target = setter }

waiter_process:start()
setter_process:start()

waiter_process:join()
setter_process:join()

print("所有进程执行完毕")
