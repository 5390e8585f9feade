-- bench/run.lua: runs each workload with corral and with Python's
-- multiprocessing in the same run, and prints both figures and the ratio.
--
--   build/corral bench/run.lua [filter...]
--
-- A workload is a pair bench/NAME.lua + bench/NAME.py. Each prints lines
--   RESULT <metric> <value> <unit>
-- Units ending in "/s", and "x" (a speedup), are higher-is-better; any
-- other unit is a cost (lower is better). Metrics present on one side only are shown alone.
-- The ratio column always reads "how many times better corral is".
local build = os.getenv("CORRAL_BUILD_DIR") or "build"
local corral_exe = build .. "/corral"
local python = os.getenv("PYTHON") or "python3"

local function list_workloads()
  local out = {}
  local p = io.popen("ls bench/*.lua")
  for f in p:lines() do
    local name = f:match("^bench/(.+)%.lua$")
    if name and name ~= "run" and name ~= "util" then out[#out + 1] = name end
  end
  p:close()
  table.sort(out)
  return out
end

local function run(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local results, order, text = {}, {}, {}
  for line in p:lines() do
    local metric, value, unit = line:match("^RESULT%s+(%S+)%s+(%S+)%s+(%S+)")
    if metric then
      if not results[metric] then order[#order + 1] = metric end
      results[metric] = { value = tonumber(value), unit = unit }
    else
      text[#text + 1] = line
    end
  end
  local ok, _, code = p:close()
  if not ok then
    io.stderr:write(("  %s exited with %s:\n    %s\n"):format(cmd, tostring(code), table.concat(text, "\n    ")))
  end
  return results, order
end

local function fmt(v, unit)
  if not v then return "-" end
  if math.abs(v) >= 100 then return ("%.0f %s"):format(v, unit) end
  if math.abs(v) >= 1 then return ("%.2f %s"):format(v, unit) end
  return ("%.3g %s"):format(v, unit)
end

local filters = { ... }
local function wanted(name)
  if #filters == 0 then return true end
  for _, f in ipairs(filters) do if name:find(f, 1, true) then return true end end
  return false
end

print(("%-40s %16s %16s %10s"):format("metric", "corral", "python", "ratio"))
for _, name in ipairs(list_workloads()) do
  if wanted(name) then
    print("== " .. name)
    local c, corder = run(("%s bench/%s.lua"):format(corral_exe, name))
    local py = {}
    local pyfile = io.open(("bench/%s.py"):format(name))
    if pyfile then
      pyfile:close()
      py = run(("%s bench/%s.py"):format(python, name))
    end
    local seen = {}
    local metrics = {}
    for _, m in ipairs(corder) do metrics[#metrics + 1] = m; seen[m] = true end
    for m in pairs(py) do if not seen[m] then metrics[#metrics + 1] = m end end
    for _, m in ipairs(metrics) do
      local a, b = c[m], py[m]
      local unit = (a or b).unit
      local ratio = "-"
      if a and b and a.value > 0 and b.value > 0 then
        local higher = unit:match("/s$") or unit == "x"
        local r = higher and a.value / b.value or b.value / a.value
        ratio = ("%.2fx"):format(r)
      end
      print(("%-40s %16s %16s %10s"):format(m, fmt(a and a.value, unit), fmt(b and b.value, unit), ratio))
    end
  end
end
