-- Seed 002_37fd0902249e69e8.txt, "## 4. 进程池".
-- Teaches: a Pool of 16 runs 32 tasks submitted with apply_async (no
-- start/join per process); close() then join() waits for them all.
-- join() before close() (or terminate()) is an error in corral (a
-- StateError) where the text warns that it deadlocks. Each task sleeps a
-- random 1, 2 or 3 seconds (the text's trick to spread requests in a
-- crawler), scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/pool/apply_async_many.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function example_function(name)
  print(("子进程%d开始"):format(name))
  pace.sleep(pace.choice{ 1, 2, 3 })
  print(("子进程%d结束"):format(name))
end

print("父进程启动")
local pool = mp.Pool(16) -- 16 workers; size it by mp.cpu_count() in real use
for i = 0, 31 do
  pool:apply_async(example_function, { i }) -- asynchronous
end
pool:close()
pool:join() -- close() (or terminate()) must come first
print("父进程结束")
