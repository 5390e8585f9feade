-- The pipeline version of queue/producer_consumer_sentinel.lua (seed
-- 000_8433a834d0ee5e01.txt, "## 使用 Queue 实现进程通信").
-- Teaches: the producer puts 5 items, the consumer handles them; the end
-- of the stream needs no sentinel (the original's None): it comes by
-- itself once the producer returns.
--   corral scripts/pipeline/sentinel_free.lua
local mp = require "corral"

local producer = mp.pipeline.produce(function(emit)
  for i = 0, 4 do
    print(("生产者生产了产品%d"):format(i))
    io.stdout:flush()
    emit(i)
  end
end)

mp.pipeline(producer)
  :map(function(item)
    print(("消费者消费了产品%d"):format(item))
    io.stdout:flush()
  end, { name = "consumer" })
  :run()
