-- Seed 001_a2c236ba738e7e5f.txt, "### 3. 信号量（Semaphore）".
-- Teaches: a Semaphore(3) lets at most three of ten processes hold a
-- "connection" at once. The port also counts the connections in use (a
-- shared Value) and prints the highest count seen, which is 3 at most.
-- The sleep is scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/sync/semaphore_connections.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

-- at most 3 processes at once
local max_connections = 3
local semaphore = mp.Semaphore(max_connections)
local in_use = mp.Value("i", 0)
local most = mp.Value("i", 0)

local function connect(name)
  print(("%s 等待连接..."):format(name))
  local _ <close> = semaphore:guard()
  local n = in_use:add(1) -- atomic; returns the new value
  while true do
    local m = most.value
    if n <= m or most:compare_and_set(m, n) then break end
  end
  print(("%s 获得连接"):format(name))
  pace.sleep(2) -- the connection in use
  print(("%s 释放连接"):format(name))
  in_use:add(-1)
end

local processes = {}
for i = 1, 10 do
  processes[i] = mp.Process{ target = connect, args = { ("Process-%d"):format(i) } }
end
for _, process in ipairs(processes) do process:start() end
for _, process in ipairs(processes) do process:join() end

print(("同时使用的连接最多: %d"):format(most.value))
print("所有连接完成")
