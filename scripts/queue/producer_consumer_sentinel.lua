-- Seed 000_8433a834d0ee5e01.txt, "## 使用 Queue 实现进程通信".
-- Teaches: a producer puts 5 items on a Queue, a consumer takes them until
-- it gets the end signal: nil (Python's None), which the parent puts after
-- the producer has ended. A corral Queue carries nil like any other value;
-- q:get() with no timeout only returns once an item is there.
--   corral scripts/queue/producer_consumer_sentinel.lua
local mp = require "corral"

local function producer(queue)
  for i = 0, 4 do
    print(("生产者生产了产品%d"):format(i))
    queue:put(i)
  end
end

local function consumer(queue)
  while true do
    local item = queue:get()
    if item == nil then break end
    print(("消费者消费了产品%d"):format(item))
  end
end

local queue = mp.Queue()

local producer_process = mp.Process{ target = producer, args = { queue } }
local consumer_process = mp.Process{ target = consumer, args = { queue } }

producer_process:start()
consumer_process:start()

producer_process:join()
queue:put(nil) -- the end signal
consumer_process:join()
