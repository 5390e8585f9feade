-- Seed 001_a2c236ba738e7e5f.txt, "### 1. 队列（Queue）".
-- Teaches: a Queue carries data between processes in FIFO order: the
-- consumer gets 0..9 in the order the producer put them, even though it is
-- slower (get() waits for the next item). Sleeps are scaled by
-- CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/queue/producer_consumer.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function producer(queue)
  for i = 0, 9 do
    print(("生产者: 生产了数据 %d"):format(i))
    queue:put(i) -- into the queue
    pace.sleep(0.5)
  end
end

local function consumer(queue)
  for _ = 1, 10 do
    local data = queue:get() -- out of the queue
    print(("消费者: 消费了数据 %d"):format(data))
    pace.sleep(1)
  end
end

local queue = mp.Queue()

local producer_process = mp.Process{ target = producer, args = { queue } }
local consumer_process = mp.Process{ target = consumer, args = { queue } }

producer_process:start()
consumer_process:start()

producer_process:join()
consumer_process:join()

print("所有进程执行完毕")
