-- Seed 004_75a4847c33e52956.txt, "### 队列 Queue", and
-- seed 002_37fd0902249e69e8.txt, "#### 设置队列的长度" (one port for both).
-- Teaches: a Queue's maxsize bounds it; get() returns items first in, first
-- out; a put on a full queue (or a get on an empty one) blocks, unless it
-- has a timeout or is a *_nowait call; empty() and full().
-- The original leaves the blocking calls commented out; the port runs
-- their non-blocking forms and prints what they give: a put or get with a
-- timeout returns false, "full" / nil, "timeout" (corral's convention for
-- an outcome of waiting), put_nowait and get_nowait raise Full and Empty as
-- in Python. Timeouts are scaled by CORRAL_TIME_SCALE.
--   corral scripts/queue/queue_basics.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

-- seed 002: a queue of length 666
local big = mp.Queue(666)
for i = 1, 666 do big:put(i) end
print(("Queue(666): 放入 666 个之后 full() = %s, qsize() = %d"):format(tostring(big:full()), big:qsize()))

-- seed 004
local queue = mp.Queue(3)
queue:put(1)
queue:put(2)
queue:put(3)
-- over the length, put would block: a timeout or put_nowait returns instead
local ok, err = pcall(queue.put_nowait, queue, 4)
print("put_nowait(4):", ok, err.kind)
print("put(4, 3 秒):", queue:put(4, 3 * pace.scale))

print(queue:get())
print(queue:get())
print(queue:get())
-- an empty queue would block get: a timeout or get_nowait returns instead
print("get(2 秒):", queue:get(2 * pace.scale))
ok, err = pcall(queue.get_nowait, queue)
print("get_nowait():", ok, err.kind)

-- is it empty?
print(queue:empty())
-- is it full?
print(queue:full())
