-- scripts/lib/pace.lua: the pace of the example scripts.
--
-- Every sleep in scripts/ goes through pace.sleep, which multiplies it by
-- the environment variable CORRAL_TIME_SCALE (default 1: the seeds' own
-- pace). CORRAL_TIME_SCALE=0.01 runs the whole set in seconds; the spec
-- (spec/scripts_spec.lua) uses it.
--
-- A script loads this file relative to its own path:
--   local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")
local mp = require "corral"

local raw = os.getenv("CORRAL_TIME_SCALE")
local scale = tonumber(raw or "1")
if not scale or scale < 0 then
  error("CORRAL_TIME_SCALE must be a number >= 0, not '" .. tostring(raw) .. "'", 0)
end

-- Output shows in the order it is printed, also through a pipe.
io.stdout:setvbuf("line")

local pace = { scale = scale }

-- sleep(s): sleeps s seconds times CORRAL_TIME_SCALE.
function pace.sleep(s)
  mp.sleep(s * scale)
end

-- randint(a, b): a random integer in a..b (Python's random.randint).
-- A forked child starts with its parent's generator state, so every child
-- would draw the same numbers: the generator is seeded again in each
-- process, by pid, on its first draw there.
local seeded_pid
function pace.randint(a, b)
  local pid = mp.getpid()
  if seeded_pid ~= pid then
    math.randomseed(os.time(), pid)
    seeded_pid = pid
  end
  return math.random(a, b)
end

-- choice(t): a random element of the array t (Python's random.choice).
function pace.choice(t)
  return t[pace.randint(1, #t)]
end

return pace
