-- The pipeline version of queue/producer_consumer.lua (seed
-- 001_a2c236ba738e7e5f.txt, "### 1. 队列（Queue）").
-- Teaches: the same flow declared as a pipeline: a producer process emits
-- 0..9, a consumer stage takes them in FIFO order; no Queue, no join, no
-- end signal in the code: the pipeline ends when the producer returns.
-- Sleeps are scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/pipeline/producer_consumer.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local producer = mp.pipeline.produce(function(emit)
  for i = 0, 9 do
    print(("生产者: 生产了数据 %d"):format(i))
    io.stdout:flush()
    emit(i)
    pace.sleep(0.5)
  end
end)

mp.pipeline(producer)
  :map(function(data)
    print(("消费者: 消费了数据 %d"):format(data))
    io.stdout:flush()
    pace.sleep(1)
  end, { name = "consumer" })
  :run()

print("所有进程执行完毕")
