-- Seed 001_a2c236ba738e7e5f.txt, "### 练习3：生产者-消费者模型" (an
-- exercise, solved).
-- Teaches: a producer puts random numbers on a Queue, a consumer takes
-- them and prints their squares, until the producer's end signal (nil).
-- The consumer also sends each result back on a second queue, so the
-- parent can check that every number was squared, in order.
-- Sleeps are scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/practice/squares_producer_consumer.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local COUNT = 10

local function producer(q)
  for _ = 1, COUNT do
    local n = pace.randint(1, 100)
    print(("生产者: 生成了随机数 %d"):format(n))
    q:put(n)
    pace.sleep(0.2)
  end
  q:put(nil) -- the end signal
end

local function consumer(q, results)
  while true do
    local n = q:get()
    if n == nil then break end
    print(("消费者: %d 的平方是 %d"):format(n, n * n))
    results:put({ n, n * n })
    pace.sleep(0.3)
  end
end

local q, results = mp.Queue(), mp.Queue()
local p = mp.Process{ target = producer, args = { q } }
local c = mp.Process{ target = consumer, args = { q, results } }
p:start()
c:start()
p:join()
c:join()

local n = 0
while true do
  local r = results:get(0)
  if r == nil then break end
  assert(r[2] == r[1] * r[1])
  n = n + 1
end
print(("共计算了 %d 个平方"):format(n))
