-- The example scripts (scripts/, see scripts/README.md): every script runs
-- with its sleeps scaled down (CORRAL_TIME_SCALE), exits with status 0 and
-- prints the lines that carry its lesson; a script this spec does not know
-- fails the suite. Each run must leave no process behind (its processes
-- are found by a marker in their environment, which every child inherits)
-- and no temporary file (each run gets a private TMPDIR, which must be
-- empty afterwards; /tmp must hold no new directory of the scripts').
-- Runs under both start methods (CORRAL_START_METHOD).
local H = require "spec.helper"
local mp = H.mp

local SCALE = "0.01"

-- ---- helpers on the output -----------------------------------------------

local function lines_of(out)
  local t = {}
  for l in (out .. "\n"):gmatch("(.-)\n") do t[#t + 1] = l end
  if t[#t] == "" then t[#t] = nil end
  return t
end

-- number of (plain) occurrences of s in out
local function count(out, s)
  local n, i = 0, 1
  while true do
    local a, b = out:find(s, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

-- index of the first line equal to s (or matching the Lua pattern p)
local function line_index(lines, s, is_pattern)
  for i, l in ipairs(lines) do
    if (is_pattern and l:match(s)) or (not is_pattern and l == s) then return i end
  end
  return nil
end

local function has_line(lines, s) return line_index(lines, s) ~= nil end

local function last(lines) return lines[#lines] end

-- every line matching pattern a comes before every line matching pattern b
local function all_before(lines, a, b)
  local last_a, first_b = 0, math.huge
  for i, l in ipairs(lines) do
    if l:match(a) then last_a = i end
    if l:match(b) and i < first_b then first_b = i end
  end
  return last_a < first_b
end

-- ---- expectations, one per script ---------------------------------------
-- check(out, lines) asserts; `wrong = true` marks an example that must
-- show a wrong result: it is run up to 3 times and passes when one run
-- does (the race is made likely by the script, never certain).

local E = {}

E["scripts/showcase.lua"] = { args = { "40" }, check = function(out, L)
  assert.truthy(has_line(L, "every word counted once: 78000 words in 39 files"), out)
  assert.truthy(out:find("failed item 7 of stage 'read': WorkerLost", 1, true), out)
  assert.truthy(line_index(L, "^tokenize +%d+ +39 +78000 ", true), out)
  assert.truthy(has_line(L, "children left: 0"), out)
end }

-- process/
E["scripts/process/print_numbers.lua"] = { check = function(_, L)
  assert.same({ "0", "1", "2", "3", "4", "进程执行完毕" }, L)
end }
E["scripts/process/subclass.lua"] = { check = function(out, L)
  assert.equal(1, count(out, "进程 Process-1 开始执行，进程ID: "))
  assert.equal(1, count(out, "进程 Process-2 执行结束，进程ID: "))
  for _, n in ipairs{ "1", "2" } do
    local a = out:match("进程 Process%-" .. n .. " 开始执行，进程ID: (%d+)")
    local b = out:match("进程 Process%-" .. n .. " 执行结束，进程ID: (%d+)")
    assert.equal(a, b)
  end
  assert.equal("所有进程执行完毕", last(L))
end }
E["scripts/process/target_function.lua"] = { check = function(out, L)
  assert.equal(1, count(out, "任务 Task-1 执行结束"))
  assert.equal(1, count(out, "任务 Task-2 执行结束"))
  assert.equal("所有任务执行完毕", last(L))
end }
E["scripts/process/daemon_heartbeat.lua"] = { check = function(out, L)
  local a, b = line_index(L, "主线程开始执行"), line_index(L, "主线程执行结束")
  assert.is_true(a ~= nil and b ~= nil and a < b, out)
  assert.is_true(count(out, "守护进程运行中...") >= 1)
end }
E["scripts/process/create_join.lua"] = { check = function(_, L)
  assert.same({ "父进程启动", "子进程启动", "example_parameter", "子进程结束", "父进程结束" },
    { L[1], L[2], L[3], L[4], L[5] })
  assert.truthy(L[6]:match("^CPU 核心数量: %d+，子进程 pid: %d+，名称: Process%-1$"), L[6])
end }
E["scripts/process/download_two_files.lua"] = { check = function(out, L)
  assert.equal(2, count(out, "启动下载进程，进程号["))
  assert.truthy(out:find("Python从入门到住院.pdf下载完成! 耗费了%d+秒"))
  assert.truthy(out:find("Peking Hot.avi下载完成! 耗费了%d+秒"))
  assert.truthy(last(L):match("^总共耗费了[%d.]+秒%.$"))
end }
E["scripts/process/current_process.lua"] = { check = function(out, L)
  local child, parent = out:match("子进程的 id: (%d+), 子进程父 id: (%d+)")
  assert.truthy(child, out)
  assert.equal("主进程 id, " .. parent, last(L))
  assert.are_not.equal(child, parent)
end }
E["scripts/process/join_order.lua"] = { check = function(_, L)
  local i = line_index(L, "--- start 之后调用 join ---")
  assert.truthy(i)
  assert.same({ "任务开始执行。。。", "任务执行结束。。。", "主进程执行完毕" }, { L[i + 1], L[i + 2], L[i + 3] })
  assert.equal(i + 3, #L) -- nothing after
end }
E["scripts/process/daemon_killed.lua"] = { check = function(out, L)
  assert.truthy(has_line(L, "主进程执行完毕..."))
  assert.equal(0, count(out, "任务结束..."))
end }

-- sync/
E["scripts/sync/counter_race.lua"] = { wrong = true, check = function(_, L)
  assert.truthy(L[1] == "1" or L[1] == "-1", "one update is lost: " .. tostring(L[1]))
end }
E["scripts/sync/counter_lock.lua"] = { check = function(_, L) assert.same({ "0" }, L) end }
E["scripts/sync/event_wait_set.lua"] = { check = function(_, L)
  assert.equal(3, #L)
  assert.truthy(line_index(L, "事件设置") < line_index(L, "事件发生了"))
  assert.truthy(line_index(L, "等待事件") < line_index(L, "事件发生了"))
end }
E["scripts/sync/event_waiter_setter.lua"] = { check = function(_, L)
  assert.truthy(line_index(L, "设置者: 准备触发事件") < line_index(L, "等待者: 事件已发生，继续执行"))
  assert.truthy(line_index(L, "等待者: 等待事件发生...") < line_index(L, "等待者: 事件已发生，继续执行"))
  assert.equal("所有进程执行完毕", last(L))
end }
E["scripts/sync/lock_counter.lua"] = { check = function(_, L) assert.same({ "最终结果: 0" }, L) end }
E["scripts/sync/rlock_nested.lua"] = { check = function(_, L)
  assert.same({ "重入深度: 5, 5", "最终结果: 0" }, L)
end }
E["scripts/sync/semaphore_connections.lua"] = { check = function(out, L)
  assert.equal(10, count(out, " 获得连接"))
  assert.equal(10, count(out, " 释放连接"))
  local most = tonumber(out:match("同时使用的连接最多: (%d+)"))
  assert.truthy(most and most >= 1 and most <= 3, out)
  assert.equal("所有连接完成", last(L))
end }
E["scripts/sync/condition_bounded_buffer.lua"] = { check = function(out, L)
  for i = 0, 9 do
    assert.equal(1, count(out, ("生产者: 生产了数据 %d，"):format(i)))
    assert.equal(1, count(out, ("消费者: 消费了数据 %d，"):format(i)))
  end
  -- FIFO: consumed in order, and the buffer never holds more than 5
  local seen = {}
  for _, l in ipairs(L) do
    local d = l:match("^消费者: 消费了数据 (%d+)")
    if d then seen[#seen + 1] = tonumber(d) end
    local buf = l:match("当前队列: %[(.*)%]$")
    if buf then assert.is_true(select(2, buf:gsub(",", "")) <= 4, l) end
  end
  assert.same({ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, seen)
  assert.equal("消费者: 消费了数据 9，当前队列: []", L[#L - 1])
  assert.equal("所有进程执行完毕", last(L))
end }
E["scripts/sync/barrier_tasks.lua"] = { check = function(_, L)
  assert.is_true(all_before(L, "到达栅栏$", "继续执行$"))
  assert.equal(3, #(function() local t = {} for _, l in ipairs(L) do if l:match("继续执行$") then t[#t + 1] = l end end return t end)())
  assert.equal("所有任务执行完毕", last(L))
end }
E["scripts/sync/value_race.lua"] = { wrong = true, check = function(_, L)
  local v = tonumber(L[1])
  assert.truthy(v and v <= 20, L[1])
  assert.is_true(v < 20, "no update was lost")
end }
E["scripts/sync/value_lock.lua"] = { check = function(_, L) assert.same({ "20" }, L) end }
E["scripts/sync/ticket_race.lua"] = { wrong = true, check = function(out, L)
  assert.equal(8, count(out, " 查询余票数量为 "))
  local bought = count(out, " 购买一张余票，余票数量为 ")
  assert.equal(8, bought + count(out, "买票失败"))
  assert.truthy(last(L):match("^tickets.json 最后的余票数量: %d$"))
  assert.is_true(bought > 2, "no ticket was oversold")
end }
E["scripts/sync/ticket_lock.lua"] = { check = function(out, L)
  assert.equal(8, count(out, " 查询余票，余票数量为："))
  assert.equal(2, count(out, " 购买成功，余票数量为："))
  assert.equal(6, count(out, " 购票失败，余票不足"))
  assert.equal(1, count(out, "购买成功，余票数量为：1"))
  assert.equal(1, count(out, "购买成功，余票数量为：0"))
  assert.equal("tickets.json 最后的余票数量: 0", last(L))
end }

-- shared/
E["scripts/shared/value_counter_lock.lua"] = { check = function(_, L) assert.same({ "最终结果: 0" }, L) end }
E["scripts/shared/array_fill.lua"] = { check = function(_, L)
  for i = 0, 9 do assert.equal(("arr[%d] = %d"):format(i, i * 2), L[i + 1]) end
  assert.equal("所有进程执行完毕", L[11])
end }
E["scripts/shared/value_double.lua"] = { check = function(_, L) assert.same({ "3.1415" }, L) end }

-- queue/
E["scripts/queue/producer_consumer_sentinel.lua"] = { check = function(out, L)
  local got = {}
  for _, l in ipairs(L) do
    local d = l:match("^消费者消费了产品(%d)$")
    if d then got[#got + 1] = d end
  end
  assert.same({ "0", "1", "2", "3", "4" }, got)
  assert.equal(5, count(out, "生产者生产了产品"))
end }
E["scripts/queue/producer_consumer.lua"] = { check = function(out, L)
  local got = {}
  for _, l in ipairs(L) do
    local d = l:match("^消费者: 消费了数据 (%d)$")
    if d then got[#got + 1] = tonumber(d) end
  end
  assert.same({ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, got)
  assert.equal(10, count(out, "生产者: 生产了数据 "))
  assert.equal("所有进程执行完毕", last(L))
end }
E["scripts/queue/queue_basics.lua"] = { check = function(_, L)
  assert.same({
    "Queue(666): 放入 666 个之后 full() = true, qsize() = 666",
    "put_nowait(4):\tfalse\tFull",
    "put(4, 3 秒):\tfalse\tfull",
    "1", "2", "3",
    "get(2 秒):\tnil\ttimeout",
    "get_nowait():\tfalse\tEmpty",
    "true", "false" }, L)
end }
E["scripts/queue/child_put_parent_get.lua"] = { check = function(_, L) assert.same({ "obj" }, L) end }
E["scripts/queue/ping_pong_global.lua"] = { check = function(out, L)
  assert.equal(50, count(out, "Ping"))
  assert.equal(50, count(out, "Pong"))
  assert.equal("主进程的 counter 仍然是 0", last(L))
end }
E["scripts/queue/ping_pong_queue.lua"] = { check = function(out, L)
  assert.equal(50, count(out, "Ping") + count(out, "Pong"))
  assert.equal(1, #L)
end }
E["scripts/queue/ipc_two_children.lua"] = { check = function(_, L)
  assert.equal(1, #L)
  local reader, writer = L[1]:match("^子进程 (%d+) 取数据：子进程 (%d+)存的数据$")
  assert.truthy(reader, L[1])
  assert.are_not.equal(reader, writer)
end }
-- The numbers made and the numbers squared, of the squares examples.
local function squares_seen(L)
  local made, squared = {}, {}
  for _, l in ipairs(L) do
    local n = l:match("^生产者: 生成了随机数 (%d+)$")
    if n then made[#made + 1] = n end
    local a, b = l:match("^消费者: (%d+) 的平方是 (%d+)$")
    if a then
      assert.equal(tonumber(a) ^ 2, tonumber(b))
      squared[#squared + 1] = a
    end
  end
  return made, squared
end

local function cooks_check(out)
  for _, food in ipairs{ "沙琪玛", "麻婆豆腐" } do
    for i = 0, 9 do
      assert.equal(1, count(out, (" 生产了 %s%d\n"):format(food, i)))
      assert.equal(1, count(out, (" 消费了 %s%d\n"):format(food, i)))
    end
  end
end
E["scripts/queue/producer_consumer_forever.lua"] = { check = function(out, L)
  cooks_check(out)
  assert.equal("20 份都吃完了，消费者仍在 q:get() 里等待: true, true", L[#L - 1])
  assert.equal("程序不会自己结束，主进程终止消费者", last(L))
end }
E["scripts/queue/producer_consumer_stop_signal.lua"] = { check = function(out)
  cooks_check(out)
  assert.equal(2, count(out, " 消费了 厨子下班了"))
  assert.equal(1, count(out, "八戒 消费了 厨子下班了"))
end }
E["scripts/queue/joinable_queue.lua"] = { check = function(out, L)
  cooks_check(out)
  assert.equal("队列中的数据都已处理完毕，主进程结束，守护进程随之结束", last(L))
end }

-- pipeline/
-- the same lessons as the Queue versions, in the same lines
E["scripts/pipeline/producer_consumer.lua"] = { check = E["scripts/queue/producer_consumer.lua"].check }
E["scripts/pipeline/sentinel_free.lua"] = { check = E["scripts/queue/producer_consumer_sentinel.lua"].check }
E["scripts/pipeline/cooks_and_eaters.lua"] = { check = function(out, L)
  cooks_check(out)
  assert.equal(20, count(out, "八戒 消费了 ") + count(out, "福迪 消费了 "))
  assert.equal("20 份都吃完了，程序自己结束", last(L))
end }
E["scripts/pipeline/squares.lua"] = { check = function(out, L)
  local made, squared = squares_seen(L)
  assert.same(made, squared)
  assert.equal(10, #made)
  assert.equal("共计算了 10 个平方", last(L))
end }

-- pipe/
E["scripts/pipe/sender_receiver.lua"] = { check = function(out, L)
  local got = {}
  for _, l in ipairs(L) do
    local d = l:match("^接收者: 接收了数据 (%d)$")
    if d then got[#got + 1] = tonumber(d) end
  end
  assert.same({ 0, 1, 2, 3, 4 }, got)
  assert.equal(5, count(out, "发送者: 发送了数据 "))
  assert.same({ "接收者: 管道已关闭", "所有进程执行完毕" }, { L[#L - 1], L[#L] })
end }
E["scripts/pipe/child_send_parent_recv.lua"] = { check = function(_, L) assert.same({ "obj" }, L) end }

-- pool/
E["scripts/pool/apply_async.lua"] = { check = function(out, L)
  -- get() waits for each result in turn: they print in the order asked for
  local i1 = line_index(L, "任务1结果: 任务 Task-1 完成")
  local i2 = line_index(L, "任务2结果: 任务 Task-2 完成")
  local i3 = line_index(L, "任务3结果: 任务 Task-3 完成")
  assert.is_true(i1 ~= nil and i2 ~= nil and i3 ~= nil and i1 < i2 and i2 < i3, out)
  assert.equal("所有任务执行完毕", last(L))
  assert.equal(3, count(out, " 执行结束，进程ID: "))
end }
E["scripts/pool/map.lua"] = { check = function(out, L)
  assert.same({ "任务 Task-1 完成", "任务 Task-2 完成", "任务 Task-3 完成", "任务 Task-4 完成", "所有任务执行完毕" },
    { L[#L - 4], L[#L - 3], L[#L - 2], L[#L - 1], L[#L] })
  assert.equal(4, count(out, " 开始执行，进程ID: "))
end }
E["scripts/pool/imap.lua"] = { check = function(_, L)
  local split = line_index(L, "=== 使用imap_unordered方法 ===")
  assert.truthy(split)
  local ordered, unordered = {}, {}
  for i, l in ipairs(L) do
    local r = l:match("^结果: 任务 (Task%-%d) 完成$")
    if r then
      if i < split then ordered[#ordered + 1] = r else unordered[#unordered + 1] = r end
    end
  end
  assert.same({ "Task-1", "Task-2", "Task-3", "Task-4" }, ordered)
  table.sort(unordered)
  assert.same({ "Task-1", "Task-2", "Task-3", "Task-4" }, unordered)
  assert.equal("所有任务执行完毕", last(L))
end }
E["scripts/pool/apply.lua"] = { check = function(_, L)
  assert.same({ "任务 Task-1 开始执行", "任务 Task-1 执行结束", "任务1结果: 任务 Task-1 完成",
                "任务 Task-2 开始执行", "任务 Task-2 执行结束", "任务2结果: 任务 Task-2 完成",
                "所有任务执行完毕" }, L)
end }
E["scripts/pool/apply_async_many.lua"] = { check = function(out, L)
  for i = 0, 31 do
    assert.equal(1, count(out, ("子进程%d开始\n"):format(i)))
    assert.equal(1, count(out, ("子进程%d结束\n"):format(i)))
  end
  assert.equal("父进程启动", L[1])
  assert.equal("父进程结束", last(L))
end }

-- threads/
E["scripts/threads/download_thread.lua"] = { check = function(out, L)
  assert.equal(2, count(out, "开始下载"))
  assert.equal(2, count(out, "下载完成! 耗费了"))
  assert.truthy(last(L):match("^总共耗费了[%d.]+秒$"))
end }
E["scripts/threads/download_thread_class.lua"] = { check = function(out, L)
  assert.equal(2, count(out, "开始下载"))
  assert.equal(2, count(out, "下载完成! 耗费了"))
  assert.truthy(last(L):match("^总共耗费了[%d.]+秒%.$"))
end }
E["scripts/threads/account_race.lua"] = { wrong = true, check = function(_, L)
  local v = tonumber(L[1]:match("^账户余额为: ￥(%d+)元$"))
  assert.truthy(v and v >= 1 and v <= 100, L[1])
  assert.is_true(v < 100, "no deposit was lost")
end }
E["scripts/threads/account_lock.lua"] = { check = function(_, L) assert.same({ "账户余额为: ￥100元" }, L) end }

-- manager/ (ported with the Manager)
E["scripts/manager/shared_list_dict.lua"] = { check = function(_, L)
  assert.truthy(has_line(L, "最终列表: [1, 2, 3, 4, 5]"))
  assert.truthy(has_line(L, "最终字典: {'a': 1, 'b': 2, 'c': 3}"))
  assert.equal("所有进程执行完毕", last(L))
end }

-- practice/
E["scripts/practice/download_images.lua"] = { check = function(out, L)
  for i = 0, 2 do assert.equal(1, count(out, ("image_%d.jpg 下载完成"):format(i))) end
  assert.equal("所有图片下载完成！", last(L))
end }
E["scripts/practice/primes_pool.lua"] = { args = { "50000" }, check = function(out, L)
  assert.truthy(out:find("1 到 50000 之间的素数数量: 5133（", 1, true), out)
  assert.truthy(out:find("单进程计算结果: 5133（", 1, true), out)
  assert.equal("结果一致", last(L))
end }
E["scripts/practice/word_count.lua"] = { check = function(_, L)
  assert.same({ "a.txt: 9 个单词", "b.txt: 10 个单词", "c.txt: 100 个单词", "d.txt: 0 个单词",
                "共 4 个文件，119 个单词" }, L)
end }
E["scripts/practice/squares_producer_consumer.lua"] = { check = function(out, L)
  local made, squared = squares_seen(L)
  assert.equal(10, #made)
  assert.same(made, squared)
  assert.equal("共计算了 10 个平方", last(L))
end }
E["scripts/practice/crawler.lua"] = { check = function(out, L)
  local saved = {}
  for _, l in ipairs(L) do
    local a, b, size, title = l:match("^已保存 /(%w+)/index%.html %-> (%w+)%.html（(%d+) 字节，标题: (%w+)）$")
    if a then
      assert.is_true(a == b and a == title and tonumber(size) > 0, l)
      saved[#saved + 1] = a
    end
  end
  table.sort(saved)
  assert.same({ "books", "music", "news", "sports", "weather" }, saved)
  assert.truthy(has_line(L, "爬取失败 /missing/index.html（404）"))
  assert.equal("共爬取 6 个网站，保存了 5 个页面", last(L))
end }

-- ---- running them ---------------------------------------------------------

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return out
end

local function list_scripts()
  local t = {}
  for path in sh("find scripts -name '*.lua' -not -path 'scripts/lib/*' | sort"):gmatch("[^\n]+") do
    t[#t + 1] = path
  end
  return t
end

-- the scripts' own temporary directories left in /tmp (in case TMPDIR was ignored)
local function tmp_leftovers()
  return sh("ls -d /tmp/corral-tickets.* /tmp/corral-images.* /tmp/corral-words.* /tmp/corral-crawl.* "
    .. "/tmp/corral-example.* 2>/dev/null")
end

-- pids of live processes whose environment holds the marker
local function marked_pids(marker)
  local out = sh("grep -lsa " .. H.shell_quote(marker) .. " /proc/[0-9]*/environ 2>/dev/null")
  local pids = {}
  for pid in out:gmatch("/proc/(%d+)/environ") do pids[#pids + 1] = pid end
  return pids
end

local runs = 0
local function run_script(path, exp)
  runs = runs + 1
  local marker = ("corral-scripts-spec-%d-%d"):format(mp.getpid(), runs)
  local tmp = sh("mktemp -d"):gsub("%s+$", "")
  assert.truthy(tmp ~= "" and tmp:match("^/"), "mktemp -d failed")
  local args = { path }
  for _, a in ipairs(exp.args or {}) do args[#args + 1] = a end
  local out, err, code = H.run(args, nil, {
    CORRAL_TIME_SCALE = SCALE, TMPDIR = tmp, CORRAL_SCRIPTS_SPEC_MARK = marker,
  })
  -- nothing left behind
  local left = H.wait_until(function() return #marked_pids(marker) == 0 end, 5)
  local pids = marked_pids(marker)
  for _, pid in ipairs(pids) do os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
  local files = sh("ls -A " .. H.shell_quote(tmp))
  os.execute("rm -rf " .. H.shell_quote(tmp))
  assert(left, path .. " left processes behind: " .. table.concat(pids, " "))
  assert(files == "", path .. " left temporary files: " .. files)
  return out, err, code
end

describe("scripts (" .. H.method .. ")", function()
  local tmp_before

  setup(function() tmp_before = tmp_leftovers() end)

  after_each(function()
    H.cleanup()
    H.assert_no_children()
  end)

  teardown(function()
    assert.equal(tmp_before, tmp_leftovers(), "scripts left directories in /tmp")
  end)

  it("knows every script under scripts/ (except scripts/lib/)", function()
    local unknown = {}
    for _, path in ipairs(list_scripts()) do
      if not E[path] then unknown[#unknown + 1] = path end
    end
    assert.same({}, unknown, "scripts without expectations in spec/scripts_spec.lua")
  end)

  it("has a script for every expectation", function()
    local have, missing = {}, {}
    for _, path in ipairs(list_scripts()) do have[path] = true end
    for path in pairs(E) do if not have[path] then missing[#missing + 1] = path end end
    table.sort(missing)
    assert.same({}, missing)
  end)

  local paths = {}
  for path in pairs(E) do paths[#paths + 1] = path end
  table.sort(paths)
  for _, path in ipairs(paths) do
    local exp = E[path]
    it(path, function()
      local f = io.open(path, "r")
      if not f then
        pending(path .. " does not exist yet")
        return
      end
      f:close()
      local tries = exp.wrong and 3 or 1
      local last_err
      for _ = 1, tries do
        local out, err, code = run_script(path, exp)
        assert(code == 0, ("%s exited with %s\nstdout:\n%s\nstderr:\n%s"):format(path, tostring(code), out, err))
        local ok, e = pcall(exp.check, out, lines_of(out))
        if ok then return end
        last_err = ("%s\nstdout:\n%s\nstderr:\n%s"):format(tostring(type(e) == "table" and e.message or e), out, err)
      end
      error(last_err, 0)
    end)
  end
end)
