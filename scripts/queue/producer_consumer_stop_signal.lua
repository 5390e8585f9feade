-- Seed 004_75a4847c33e52956.txt, "#### 生产者消费者模型", the second code
-- (the consumers stop at a signal).
-- Teaches: after both producers have ended, the parent puts one stop
-- signal per consumer ("厨子下班了"); each consumer ends when it reads one.
-- The original's snippet elides the unchanged producer and start-up code
-- ("# ..."); the port is the whole program, and joins the consumers too.
-- Sleeps are scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/queue/producer_consumer_stop_signal.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function producer(name, food, q)
  for i = 0, 9 do
    pace.sleep(pace.randint(1, 3))
    q:put(("%s%d"):format(food, i))
    print(("%s 生产了 %s%d"):format(name, food, i))
  end
end

-- the changed consumer
local function consumer(name, q)
  while true do
    pace.sleep(pace.randint(1, 3))
    local data = q:get()
    print(("%s 消费了 %s"):format(name, data))
    if data == "厨子下班了" then break end
  end
end

local queue = mp.Queue()
local p1 = mp.Process{ target = producer, args = { "神厨小福贵", "沙琪玛", queue } }
local p2 = mp.Process{ target = producer, args = { "中华小当家", "麻婆豆腐", queue } }
local c1 = mp.Process{ target = consumer, args = { "八戒", queue } }
local c2 = mp.Process{ target = consumer, args = { "福迪", queue } }
p1:start()
p2:start()
c1:start()
c2:start()

-- once p1 and p2 have ended, put the two stop signals
p1:join()
p2:join()
queue:put("厨子下班了")
queue:put("厨子下班了")
c1:join()
c2:join()
