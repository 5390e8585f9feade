-- Seed 002_37fd0902249e69e8.txt, "### 2. 管道".
-- Teaches: a Pipe has two ends: the child sends on one (like Queue's put),
-- the parent receives on the other (like get). A corral Pipe is duplex by
-- default, as Python's; mp.Pipe(false) gives a one-way pipe.
--   corral scripts/pipe/child_send_parent_recv.lua
local mp = require "corral"

local function task(q)
  q:send("obj") -- like Queue:put()
end

local parent_conn, child_conn = mp.Pipe() -- two ends
local process = mp.Process{ target = task, args = { child_conn } }
process:start()
print(parent_conn:recv()) -- like Queue:get()
process:join()
