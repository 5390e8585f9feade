-- Seed 003_3244e5ca5ef63fea.txt, "### 进程间通信", the Queue version.
-- Teaches: the counter travels through a Queue, so only one process holds
-- it at a time: "Ping" and "Pong" are printed 50 times in all. When one
-- process has ended, the parent puts 50 so that the other, blocked in
-- get(), reads it and ends too.
-- The original's parent spins (`while p1.is_alive() and p2.is_alive():
-- pass`), keeping a core busy; the port checks every millisecond instead.
-- It also joins both children and ends the line. Sleeps are scaled by
-- CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/queue/ping_pong_queue.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function sub_task(content, queue)
  local counter = queue:get()
  while counter < 50 do
    io.write(content)
    io.stdout:flush()
    counter = counter + 1
    queue:put(counter)
    pace.sleep(0.01)
    counter = queue:get()
  end
end

local function main()
  local queue = mp.Queue()
  queue:put(0)
  local p1 = mp.Process{ target = sub_task, args = { "Ping", queue } }
  p1:start()
  local p2 = mp.Process{ target = sub_task, args = { "Pong", queue } }
  p2:start()
  while p1:is_alive() and p2:is_alive() do
    mp.sleep(0.001)
  end
  queue:put(50)
  p1:join()
  p2:join()
  print()
end

main()
