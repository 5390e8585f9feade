-- Manager proxies: the cost of one list append, dict set and dict get,
-- measured in a child process (as Python's Manager is used from workers).
-- Same workload as manager.py.
local mp = require "corral"
local N = tonumber(os.getenv("BENCH_N") or "") or 200000

local m <close> = mp.Manager()
local l, d = m:list(), m:dict()
local results = mp.Queue()

local function best_of(f)
  local best = math.huge
  for _ = 1, 3 do
    local t0 = mp.time()
    f()
    best = math.min(best, (mp.time() - t0) / N)
  end
  return best
end

local p = mp.Process { target = function(l, d, results)
  local r = {}
  r.append = best_of(function() for i = 1, N do l:append(i) end end)
  for i = 1, 1000 do d["key" .. i] = i end
  r.set = best_of(function() for i = 1, N do d["key" .. (i % 1000 + 1)] = i end end)
  local get = 0
  r.get = best_of(function() for i = 1, N do get = get + d["key" .. (i % 1000 + 1)] end end)
  results:put(r)
end, args = { l, d, results } }
p:start()
local r = results:get()
p:join()
assert(#l == 3 * N, "lost appends")
print(("RESULT manager_list_append %.2f us"):format(r.append * 1e6))
print(("RESULT manager_dict_set %.2f us"):format(r.set * 1e6))
print(("RESULT manager_dict_get %.2f us"):format(r.get * 1e6))
