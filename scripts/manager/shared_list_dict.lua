-- The seed's Manager example: two processes fill a shared list and a shared
-- dict made by a Manager, each under a lock, and the parent prints both.
-- Ported from /work/shared/seeds/001_a2c236ba738e7e5f.txt, section
-- "## 四、进程间通信（IPC)" / "### 5. 管理器（Manager）".
--
--   build/corral scripts/manager/shared_list_dict.lua
--
-- Differences from the Python original: the pause after each step is
-- 0.05 s instead of 0.5 s (the output is the same, only faster), and the
-- Manager is a to-be-closed variable, which shuts it down at the end as
-- Python's `with Manager() as manager` would.
local mp = corral or require "corral"

local function add_to_list(shared_list, lock, items)
  local _ <close> = lock:guard()
  for _, item in ipairs(items) do
    shared_list:append(item)
    print(("添加了元素 %s，当前列表: %s"):format(tostring(item), tostring(shared_list)))
    mp.sleep(0.05)
  end
end

local function update_dict(shared_dict, lock, updates)
  local _ <close> = lock:guard()
  -- A Lua table has no order; pairs of an array keep the seed's a, b, c.
  for _, kv in ipairs(updates) do
    local key, value = kv[1], kv[2]
    shared_dict[key] = value
    print(("更新了字典 %s: %s，当前字典: %s"):format(key, tostring(value), tostring(shared_dict)))
    mp.sleep(0.05)
  end
end

-- 创建管理器
local manager <close> = mp.Manager()
-- 创建共享列表和字典
local shared_list = manager:list()
local shared_dict = manager:dict()
-- 创建锁
local lock = mp.Lock()

-- 创建进程
local process1 = mp.Process { target = add_to_list, args = { shared_list, lock, { 1, 2, 3, 4, 5 } } }
local process2 = mp.Process { target = update_dict, args = { shared_dict, lock, { { "a", 1 }, { "b", 2 }, { "c", 3 } } } }

-- 启动进程
process1:start()
process2:start()

-- 等待进程结束
process1:join()
process2:join()

print(("最终列表: %s"):format(tostring(shared_list)))
print(("最终字典: %s"):format(tostring(shared_dict)))
print("所有进程执行完毕")
