-- Seed 001_a2c236ba738e7e5f.txt, "### 练习1：多进程计算素数" (an exercise,
-- solved).
-- Teaches: split a range into chunks, count the primes of each chunk in a
-- Pool (one worker per core), add the counts; the same count as one
-- process gets, in less time on several cores.
--   corral scripts/practice/primes_pool.lua [limit]   (default 200000)
local mp = require "corral"

local limit = math.tointeger(tonumber(arg[1] or "200000")) or error("limit must be an integer")

local function is_prime(n)
  if n < 2 then return false end
  if n % 2 == 0 then return n == 2 end
  local d = 3
  while d * d <= n do
    if n % d == 0 then return false end
    d = d + 2
  end
  return true
end

local function count_primes(range) -- range = {lo, hi}
  local n = 0
  for k = range[1], range[2] do
    if is_prime(k) then n = n + 1 end
  end
  return n
end

-- the chunks: 1..limit in 32 pieces
local chunks, step = {}, math.max(1, limit // 32)
for lo = 1, limit, step do chunks[#chunks + 1] = { lo, math.min(limit, lo + step - 1) } end

local workers = mp.cpu_count()
local t0 = mp.time()
local total = 0
do
  local pool <close> = mp.Pool(workers)
  for _, n in ipairs(pool:map(count_primes, chunks)) do total = total + n end
end
local t_pool = mp.time() - t0

t0 = mp.time()
local serial = count_primes{ 1, limit }
local t_serial = mp.time() - t0

print(("1 到 %d 之间的素数数量: %d（进程池 %d 个进程，%d 块，%.2f 秒）"):format(limit, total, workers, #chunks, t_pool))
print(("单进程计算结果: %d（%.2f 秒）"):format(serial, t_serial))
print(total == serial and "结果一致" or "结果不一致！")
