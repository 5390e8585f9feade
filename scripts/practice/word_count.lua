-- Seed 001_a2c236ba738e7e5f.txt, "### 练习2：多进程文件处理" (an exercise,
-- solved).
-- Teaches: several files handled at once: a Pool maps a word-counting
-- function over the file names and returns the counts in the same order.
-- The script writes its own four text files into a private temporary
-- directory (scripts/lib/tmpdir.lua) and removes it at the end.
--   corral scripts/practice/word_count.lua
local mp = require "corral"
local tmpdir = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/tmpdir.lua")

local tmp <close> = tmpdir.new("corral-words")

-- the files: name -> text (the expected count is known)
local texts = {
  { "a.txt", "the quick brown fox jumps over the lazy dog" },                 -- 9
  { "b.txt", "to be or not to be\nthat is the question" },                    -- 10
  { "c.txt", ("process pool queue pipe lock\n"):rep(20) },                    -- 100
  { "d.txt", "" },                                                            -- 0
}
local paths = {}
for i, t in ipairs(texts) do
  paths[i] = tmp:file(t[1])
  local f = assert(io.open(paths[i], "w"))
  f:write(t[2])
  f:close()
end

local function count_words(path)
  local f = assert(io.open(path, "r"))
  local n = 0
  for _ in f:read("a"):gmatch("%S+") do n = n + 1 end
  f:close()
  return n
end

local counts
do
  local pool <close> = mp.Pool(math.min(4, mp.cpu_count() * 2))
  counts = pool:map(count_words, paths)
end

local total = 0
for i, n in ipairs(counts) do
  print(("%s: %d 个单词"):format(texts[i][1], n))
  total = total + n
end
print(("共 %d 个文件，%d 个单词"):format(#counts, total))
