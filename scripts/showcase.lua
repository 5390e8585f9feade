-- showcase: what corral does, in one short run.
--   corral scripts/showcase.lua [--trace FILE] [files]
-- Counts the words of generated text files with a pipeline:
--   read (1 worker) -> tokenize (N workers) -> count (M workers) -> merge (here)
-- Items go from stage to stage through shared-memory queues, each stage in
-- processes of its own, with a live line per stage on a terminal. One file
-- is poisoned: the worker that reads it dies, that file alone fails with
-- WorkerLost, and everything else is counted exactly once. --trace FILE
-- (as `corral --trace FILE scripts/showcase.lua` does) writes the run's
-- timeline for Perfetto (docs/observability.md).
local mp = require "corral"
local tmpdir = dofile((arg[0]:match("^(.*)/") or ".") .. "/lib/tmpdir.lua")

local args = { ... }
if args[1] == "--trace" then
  if not args[2] then error("showcase: '--trace' needs a file name", 0) end
  mp.trace(args[2])
  table.remove(args, 1)
  table.remove(args, 1)
end
local nfiles = tonumber(args[1]) or 400
local workers = math.max(2, mp.cpu_count())
local WORDS = { "the", "process", "queue", "lock", "pipe", "pool", "worker", "lua", "shared", "memory",
                "fork", "spawn", "signal", "event", "barrier", "value", "array", "manager", "closure", "stage" }

-- Writes the files: file k has 2000 words drawn with a skewed distribution.
local tmp <close> = tmpdir.new("corral-showcase")
local files, expected, seed = {}, {}, 12345
for k = 1, nfiles do
  local words = {}
  for i = 1, 2000 do
    seed = (seed * 1103515245 + 12345) % 2147483648
    local r = seed / 2147483648
    local w = WORDS[math.floor(r * r * #WORDS) + 1]
    words[i] = w
    if k ~= 7 then expected[w] = (expected[w] or 0) + 1 end
  end
  files[k] = tmp:file(("part-%04d.txt"):format(k))
  local f = assert(io.open(files[k], "w"))
  f:write(table.concat(words, " "), "\n")
  f:close()
end
local poisoned = files[7]

print(("corral %s: word counts over %d files, %d workers a stage, start method %s"):format(
  mp.VERSION, nfiles, workers, mp.get_start_method()))

local counts, stats = mp.pipeline(files, { progress = true, on_error = "collect", name = "wordcount" })
  :map(function(path)
    if path == poisoned then os.execute("kill -KILL " .. mp.getpid()) end -- a worker dies mid-item
    local f = assert(io.open(path))
    local text = f:read("a")
    f:close()
    return text
  end, { name = "read" })
  :flat_map(function(text)
    local words = {}
    for w in text:gmatch("%a+") do words[#words + 1] = w:lower() end
    return words
  end, { workers = workers, name = "tokenize" })
  :reduce(function(acc, w) acc[w] = (acc[w] or 0) + 1; return acc end, {}, {
    workers = workers, name = "count",
    merge = function(a, b)
      for w, n in pairs(b) do a[w] = (a[w] or 0) + n end
      return a
    end,
  })
  :run()

local top = {}
for w, n in pairs(counts) do top[#top + 1] = { w, n } end
table.sort(top, function(a, b) return a[2] > b[2] or (a[2] == b[2] and a[1] < b[1]) end)
print("top words:")
for i = 1, math.min(5, #top) do print(("  %-10s %8d"):format(top[i][1], top[i][2])) end

for w, n in pairs(expected) do assert(counts[w] == n, "count of " .. w .. " differs") end
for w in pairs(counts) do assert(expected[w], "unexpected word " .. w) end
print(("every word counted once: %d words in %d files"):format(stats.stages[3].items_in, nfiles - 1))
for _, e in ipairs(stats.errors) do
  print(("failed item %d of stage '%s': %s: %s"):format(e.index, e.stage, e.kind, e.message))
end
print(stats)
print(("children left: %d"):format(#mp.active_children()))
