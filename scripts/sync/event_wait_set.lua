-- Seed 000_8433a834d0ee5e01.txt, "## 使用 Event 实现进程同步".
-- Teaches: one process waits on an Event until another sets it.
-- The sleep is scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/sync/event_wait_set.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function wait_for_event(event)
  print("等待事件")
  event:wait()
  print("事件发生了")
end

local function set_event(event)
  pace.sleep(2) -- some work before
  print("事件设置")
  event:set()
end

local event = mp.Event()

local process1 = mp.Process{ target = wait_for_event, args = { event } }
local process2 = mp.Process{ target = set_event, args = { event } }

process1:start()
process2:start()

process1:join()
process2:join()
