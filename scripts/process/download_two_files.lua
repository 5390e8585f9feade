-- Seed 003_3244e5ca5ef63fea.txt, "### Python中的多进程".
-- Teaches: two "downloads" in two processes run at the same time, so the
-- total time is about the longer one, not the sum of both.
-- The download is simulated by a random sleep of 5 to 10 seconds, scaled by
-- CORRAL_TIME_SCALE (scripts/lib/pace.lua); each task reports the seconds it
-- drew, the total is measured (so it is scaled too).
--   corral scripts/process/download_two_files.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function download_task(filename)
  print(("启动下载进程，进程号[%d]."):format(mp.getpid()))
  print(("开始下载%s..."):format(filename))
  local time_to_download = pace.randint(5, 10)
  pace.sleep(time_to_download)
  print(("%s下载完成! 耗费了%d秒"):format(filename, time_to_download))
end

local function main()
  local start = mp.time()
  local p1 = mp.Process{ target = download_task, args = { "Python从入门到住院.pdf" } }
  p1:start()
  local p2 = mp.Process{ target = download_task, args = { "Peking Hot.avi" } }
  p2:start()
  p1:join()
  p2:join()
  local finish = mp.time()
  print(("总共耗费了%.2f秒."):format(finish - start))
end

main()
