-- Seed 004_75a4847c33e52956.txt, "#### 生产者消费者模型", the JoinableQueue code.
-- Teaches: a JoinableQueue counts the items put and not yet task_done();
-- queue:join() returns when that count is 0, so the parent knows every
-- dish was eaten without any stop signal. The consumers are daemons: they
-- still loop forever, and are terminated when the main script ends.
-- The port prints one last line after queue:join() to show where it
-- returns. The original's set_start_method("fork") is left out (a corral
-- child never re-runs the script). Sleeps are scaled by CORRAL_TIME_SCALE.
--   corral scripts/queue/joinable_queue.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function producer(name, food, q)
  for i = 0, 9 do
    pace.sleep(pace.randint(1, 3))
    q:put(("%s%d"):format(food, i))
    print(("%s 生产了 %s%d"):format(name, food, i))
  end
end

local function consumer(name, q)
  while true do
    pace.sleep(pace.randint(1, 3))
    local data = q:get()
    print(("%s 消费了 %s"):format(name, data))
    -- one item taken out and handled
    q:task_done()
  end
end

local queue = mp.JoinableQueue()
local p1 = mp.Process{ target = producer, args = { "神厨小福贵", "沙琪玛", queue } }
local p2 = mp.Process{ target = producer, args = { "中华小当家", "麻婆豆腐", queue } }
local c1 = mp.Process{ target = consumer, args = { "八戒", queue } }
local c2 = mp.Process{ target = consumer, args = { "福迪", queue } }

p1:start()
p2:start()

-- the consumers are daemons of the main process
c1.daemon = true
c2.daemon = true
c1:start()
c2:start()

-- the producers may be slow: without these joins the count could reach 0
-- before everything is made
p1:join()
p2:join()

queue:join() -- until every item is task_done
print("队列中的数据都已处理完毕，主进程结束，守护进程随之结束")
