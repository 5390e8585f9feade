-- Seed 001_a2c236ba738e7e5f.txt, "### 2. 可重入锁（RLock）".
-- Teaches: an RLock can be taken again by the process that holds it, so a
-- recursive function can lock at every level without deadlocking itself.
-- What the original got wrong: `count` is a plain global copied into each
-- child, so the 0 it prints comes from no process. The port shares it (a
-- Value) and also prints the depth each process reached while holding the
-- lock 5 times.
--   corral scripts/sync/rlock_nested.lua
local mp = require "corral"

local rlock = mp.RLock()
local count = mp.Value("i", 0, { lock = false })
local deepest = mp.Array("i", 2, { lock = false })

local function nested_increment(n)
  if n == 0 then return end
  local _ <close> = rlock:guard()
  count.value = count.value + 1
  deepest[1] = math.max(deepest[1], rlock:depth())
  nested_increment(n - 1)
end

local function nested_decrement(n)
  if n == 0 then return end
  local _ <close> = rlock:guard()
  count.value = count.value - 1
  deepest[2] = math.max(deepest[2], rlock:depth())
  nested_decrement(n - 1)
end

local process1 = mp.Process{ target = nested_increment, args = { 5 } }
local process2 = mp.Process{ target = nested_decrement, args = { 5 } }

process1:start()
process2:start()

process1:join()
process2:join()

print(("重入深度: %d, %d"):format(deepest[1], deepest[2]))
print(("最终结果: %d"):format(count.value)) -- expected: 0
