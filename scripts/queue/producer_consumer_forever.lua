-- Seed 004_75a4847c33e52956.txt, "#### 生产者消费者模型", the first code.
-- Teaches: two producers (cooks) and two consumers (eaters) share a Queue;
-- and the problem the text then raises: the consumers loop forever in
-- q:get(), so once all 20 dishes are eaten the program cannot end.
-- The original indeed never ends. The port shows the problem without
-- hanging: it counts the dishes eaten (a shared Value), and once all 20
-- are, it says that the consumers are still waiting and terminates them.
-- (scripts/queue/producer_consumer_stop_signal.lua and
-- scripts/queue/joinable_queue.lua port the two fixes.)
-- The original's set_start_method("fork") is left out: a corral child
-- never re-runs the script, under either method. Sleeps are scaled by
-- CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/queue/producer_consumer_forever.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local eaten = mp.Value("i", 0)

local function producer(name, food, q)
  for i = 0, 9 do
    pace.sleep(pace.randint(1, 3)) -- cooking
    q:put(("%s%d"):format(food, i))
    print(("%s 生产了 %s%d"):format(name, food, i))
  end
end

local function consumer(name, q)
  while true do
    pace.sleep(pace.randint(1, 3)) -- eating
    local food = q:get()
    print(("%s 消费了 %s"):format(name, food))
    eaten:add(1)
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

-- the port's addition: see the consumers stuck, then stop them
p1:join()
p2:join()
while eaten.value < 20 do mp.sleep(0.001) end
pace.sleep(3) -- both are back in q:get() by now, waiting for food that never comes
print(("20 份都吃完了，消费者仍在 q:get() 里等待: %s, %s"):format(tostring(c1:is_alive()), tostring(c2:is_alive())))
print("程序不会自己结束，主进程终止消费者")
c1:terminate()
c2:terminate()
c1:join()
c2:join()
