-- The pipeline version of the cooks and eaters (seed
-- 004_75a4847c33e52956.txt, "#### 生产者消费者模型": its first code,
-- queue/producer_consumer_forever.lua, which never ends; its two fixes,
-- queue/producer_consumer_stop_signal.lua, one stop signal per eater, and
-- queue/joinable_queue.lua, task_done and join).
-- Teaches: two producer processes (cooks) and a stage of two workers
-- (eaters): the pipeline ends by itself once both cooks are done and every
-- dish is eaten: no stop signal, no task_done, no daemon to terminate.
-- Sleeps are scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/pipeline/cooks_and_eaters.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local COOKS = { { "神厨小福贵", "沙琪玛" }, { "中华小当家", "麻婆豆腐" } }
local EATERS = { "八戒", "福迪" }

local cooks = mp.pipeline.produce(function(emit, k)
  local name, food = COOKS[k][1], COOKS[k][2]
  for i = 0, 9 do
    pace.sleep(pace.randint(1, 3)) -- cooking
    emit(("%s%d"):format(food, i))
    print(("%s 生产了 %s%d"):format(name, food, i))
    io.stdout:flush()
  end
end, { workers = 2, name = "cooks" })

local eaten = mp.pipeline(cooks)
  :map(function(food)
    pace.sleep(pace.randint(1, 3)) -- eating
    local me = EATERS[tonumber(mp.current_process().name:match("%d+$"))]
    print(("%s 消费了 %s"):format(me, food))
    io.stdout:flush()
    return food
  end, { workers = 2, name = "eaters" })
  :run()

print(("%d 份都吃完了，程序自己结束"):format(#eaten))
