-- Seed 003_3244e5ca5ef63fea.txt, "### Python中的多线程", the Thread subclass.
-- Teaches: a task can be a class: init() keeps the file name, run() does
-- the work; start() and join() as before.
-- Why processes: Lua has no preemptive threads (a Lua state runs one
-- coroutine at a time, switching only where the code yields); the subclass
-- of Thread becomes a process class made with mp.Process:extend(), which
-- carries the same lesson. Sleeps are scaled by CORRAL_TIME_SCALE.
--   corral scripts/threads/download_thread_class.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local DownloadTask = mp.Process:extend()

function DownloadTask:init(filename)
  self._filename = filename
end

function DownloadTask:run()
  print(("开始下载%s..."):format(self._filename))
  local time_to_download = pace.randint(5, 10)
  pace.sleep(time_to_download)
  print(("%s下载完成! 耗费了%d秒"):format(self._filename, time_to_download))
end

local function main()
  local start = mp.time()
  local t1 = DownloadTask("Python从入门到住院.pdf")
  t1:start()
  local t2 = DownloadTask("Peking Hot.avi")
  t2:start()
  t1:join()
  t2:join()
  print(("总共耗费了%.2f秒."):format(mp.time() - start))
end

main()
