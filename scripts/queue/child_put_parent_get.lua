-- Seed 002_37fd0902249e69e8.txt, "#### 在进程中实现通信".
-- Teaches: a Queue made in the parent and given to the child: the child
-- puts, the parent gets.
--   corral scripts/queue/child_put_parent_get.lua
local mp = require "corral"

local function task(q)
  q:put("obj")
end

local queue = mp.Queue() -- made in the parent
local process = mp.Process{ target = task, args = { queue } } -- given to the child
process:start() -- the child puts
print(queue:get()) -- the parent gets
process:join()
