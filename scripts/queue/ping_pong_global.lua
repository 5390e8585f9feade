-- Seed 003_3244e5ca5ef63fea.txt, "### 进程间通信", the first code (the wrong
-- example).
-- Teaches: a variable is not shared between processes: each child has its
-- own copy of `counter` (a local of the main chunk, Lua's closest thing to
-- a Python module global; a real Lua global would not even reach a spawned
-- child, which gets the target's upvalues but not the parent's globals),
-- so "Ping" and "Pong" are printed 50 times each (100 in all), not 50 in
-- all as intended, and the parent's counter stays 0.
-- The original does not join the children (Python joins them at exit);
-- the port joins them, then ends the line. Sleeps are scaled by
-- CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/queue/ping_pong_global.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local counter = 0 -- the script's own variable (Python's module global), copied into each process

local function sub_task(string)
  while counter < 50 do
    io.write(string)
    io.stdout:flush()
    counter = counter + 1
    pace.sleep(0.01)
  end
end

local function main()
  local p1 = mp.Process{ target = sub_task, args = { "Ping" } }
  local p2 = mp.Process{ target = sub_task, args = { "Pong" } }
  p1:start()
  p2:start()
  p1:join()
  p2:join()
  print()
  print(("主进程的 counter 仍然是 %d"):format(counter))
end

main()
