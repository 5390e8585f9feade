-- The pipeline version of practice/squares_producer_consumer.lua (seed
-- 001_a2c236ba738e7e5f.txt, "### 练习3：生产者-消费者模型").
-- Teaches: a producer process makes random numbers, a stage squares them,
-- and the squares come back to the parent in the order the numbers were
-- made: no end signal, no second queue to send the results back.
-- Sleeps are scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/pipeline/squares.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local COUNT = 10

local producer = mp.pipeline.produce(function(emit)
  for _ = 1, COUNT do
    local n = pace.randint(1, 100)
    print(("生产者: 生成了随机数 %d"):format(n))
    io.stdout:flush()
    emit(n)
    pace.sleep(0.2)
  end
end)

local results = mp.pipeline(producer)
  :map(function(n)
    print(("消费者: %d 的平方是 %d"):format(n, n * n))
    io.stdout:flush()
    pace.sleep(0.3)
    return { n, n * n }
  end, { name = "square" })
  :run()

for _, r in ipairs(results) do assert(r[2] == r[1] * r[1]) end
print(("共计算了 %d 个平方"):format(#results))
