-- Seed 003_3244e5ca5ef63fea.txt, "### Python中的多线程", the Thread code.
-- Teaches: two downloads started with a target function run at the same
-- time, so the total is about the longer one.
-- Why processes: Lua has no preemptive threads. A Lua state runs one
-- coroutine at a time and switches only where the code yields, so it has
-- no Thread to port; the lesson (two tasks waiting at once) carries over
-- to corral processes unchanged: Process takes the target and args that
-- Thread took. Sleeps are scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
-- (scripts/process/download_two_files.lua is the seed's process version.)
--   corral scripts/threads/download_thread.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function download(filename)
  print(("开始下载%s..."):format(filename))
  local time_to_download = pace.randint(5, 10)
  pace.sleep(time_to_download)
  print(("%s下载完成! 耗费了%d秒"):format(filename, time_to_download))
end

local function main()
  local start = mp.time()
  local t1 = mp.Process{ target = download, args = { "Python从入门到住院.pdf" } }
  t1:start()
  local t2 = mp.Process{ target = download, args = { "Peking Hot.avi" } }
  t2:start()
  t1:join()
  t2:join()
  print(("总共耗费了%.3f秒"):format(mp.time() - start))
end

main()
