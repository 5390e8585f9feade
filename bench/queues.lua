-- Queue throughput: 1->1 for small integers, 1 KiB strings and 1 MiB
-- strings; 2 producers -> 2 consumers; SimpleQueue. Same workloads as
-- queues.py. A rate is measured in the consumers from their first item to
-- their last, so process start-up is not counted.
local mp = require "corral"
local N = tonumber(os.getenv("BENCH_N") or "") or 400000
local ctx = mp.get_context("fork")

local function producer(q, n, item, base)
  base = base or 0
  if item == nil then
    for i = base + 1, base + n do q:put(i) end
  else
    for _ = 1, n do q:put(item) end
  end
end

-- One producer process, the consumer here. Returns items per second.
local function one_to_one(q, n, item)
  local p = ctx.Process { target = producer, args = { q, n, item } }
  p:start()
  q:get()
  local t0 = mp.time()
  for _ = 2, n do q:get() end
  local dt = mp.time() - t0
  p:join()
  return (n - 1) / dt
end

local function consumer(q, results)
  local count, first, last = 0, nil, nil
  while true do
    local v = q:get()
    if v == -1 then break end
    count = count + 1
    last = mp.time()
    first = first or last
  end
  results:put({ count, first, last })
end

local function two_to_two(n)
  local q, results = mp.Queue(), mp.Queue()
  local cs, ps = {}, {}
  for i = 1, 2 do
    cs[i] = ctx.Process { target = consumer, args = { q, results } }
    cs[i]:start()
  end
  for i = 1, 2 do
    ps[i] = ctx.Process { target = producer, args = { q, n // 2, nil, (i - 1) * (n // 2) } }
    ps[i]:start()
  end
  for i = 1, 2 do ps[i]:join() end
  for _ = 1, 2 do q:put(-1) end
  local count, first, last = 0, math.huge, 0
  for _ = 1, 2 do
    local r = results:get()
    count = count + r[1]
    first = math.min(first, r[2])
    last = math.max(last, r[3])
  end
  for i = 1, 2 do cs[i]:join() end
  assert(count == n)
  return n / (last - first)
end

print(("RESULT queue_small_1to1 %.0f msgs/s"):format(one_to_one(mp.Queue(), N)))
print(("RESULT queue_1KiB_1to1 %.0f msgs/s"):format(one_to_one(mp.Queue(), N // 4, ("x"):rep(1024))))
-- Bounded, so that the producer cannot run ahead and the rate is the
-- steady flow from producer to consumer, not the draining of a full queue.
local big = 400
local rate = one_to_one(mp.Queue(8), big, ("y"):rep(1024 * 1024))
print(("RESULT queue_1MiB_1to1 %.0f MB/s"):format(rate * 1024 * 1024 / 1e6))
print(("RESULT queue_small_2to2 %.0f msgs/s"):format(two_to_two(N)))
print(("RESULT simplequeue_small_1to1 %.0f msgs/s"):format(one_to_one(mp.SimpleQueue(), N)))
