-- Seed 001_a2c236ba738e7e5f.txt, "### 5. 条件变量（Condition）".
-- Teaches: a Condition lets a producer wait while a bounded buffer is full
-- and a consumer wait while it is empty; each wakes the other with
-- notify_all() after changing the buffer.
-- What the original got wrong: its buffer `queue = []` is a plain list, and
-- each process gets its own copy: the producer fills its copy up to 5 and
-- waits forever, the consumer waits forever on its empty copy, and the
-- program hangs. The port keeps the buffer in shared memory (an Array of 5
-- slots and a Value length, both guarded by the Condition's lock), so the
-- example does what the text describes. Sleeps are scaled by
-- CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/sync/condition_bounded_buffer.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local MAX_QUEUE_SIZE = 5
-- the condition, and the shared buffer it guards
local condition = mp.Condition()
local slots = mp.Array("i", MAX_QUEUE_SIZE, { lock = false })
local length = mp.Value("i", 0, { lock = false })

local function show() -- the buffer as Python prints a list
  local t = {}
  for i = 1, length.value do t[i] = tostring(slots[i]) end
  return "[" .. table.concat(t, ", ") .. "]"
end

local function append(v)
  length.value = length.value + 1
  slots[length.value] = v
end

local function pop_front()
  local v = slots[1]
  for i = 1, length.value - 1 do slots[i] = slots[i + 1] end
  length.value = length.value - 1
  return v
end

local function producer()
  for i = 0, 9 do
    do
      local _ <close> = condition:guard()
      -- wait while the buffer is full
      while length.value >= MAX_QUEUE_SIZE do
        print("生产者: 队列已满，等待消费者消费")
        condition:wait()
      end
      append(i)
      print(("生产者: 生产了数据 %d，当前队列: %s"):format(i, show()))
      condition:notify_all() -- wake the consumer
    end
    pace.sleep(0.5)
  end
end

local function consumer()
  for _ = 1, 10 do
    do
      local _ <close> = condition:guard()
      -- wait while the buffer is empty
      while length.value == 0 do
        print("消费者: 队列已空，等待生产者生产")
        condition:wait()
      end
      local data = pop_front()
      print(("消费者: 消费了数据 %d，当前队列: %s"):format(data, show()))
      condition:notify_all() -- wake the producer
    end
    pace.sleep(1)
  end
end

local producer_process = mp.Process{ target = producer }
local consumer_process = mp.Process{ target = consumer }

producer_process:start()
consumer_process:start()

producer_process:join()
consumer_process:join()

print("所有进程执行完毕")
