-- Seed 004_75a4847c33e52956.txt, "### 互斥锁", the fixed code.
-- Teaches: a Lock around the purchase turns the concurrent buys into one
-- after another: 2 users get the 2 tickets, the other 6 are refused.
-- What the original got wrong: it reads dic['ticket_num'] while the
-- tickets.json it shows holds "ticket", so each child dies with KeyError;
-- the port uses "ticket" as the file has it. It also calls
-- set_start_method('fork') for macOS, where spawn is the default and
-- Python's spawn re-runs the script: a corral child never re-runs the
-- parent's script, so the port works under either method and leaves the
-- choice to CORRAL_START_METHOD. The file lives in a private temporary
-- directory, removed at the end; the port joins the users first.
-- Sleeps are scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/sync/ticket_lock.lua
local mp = require "corral"
local lib = (arg[0]:match("^(.*)/") or ".") .. "/../lib/"
local pace = dofile(lib .. "pace.lua")
local tmpdir = dofile(lib .. "tmpdir.lua")

local tmp <close> = tmpdir.new("corral-tickets")
local TICKETS = tmp:file("tickets.json")

local function load(path)
  local f = assert(io.open(path, "r"))
  local text = f:read("a")
  f:close()
  return { ticket = assert(tonumber(text:match('"ticket"%s*:%s*(%-?%d+)')), "bad tickets.json") }
end

-- Written beside the file and renamed over it: users query without the
-- lock, and a reader must see the old count or the new one, never the
-- empty file that opening with "w" leaves while the write is under way
-- (the original's json.dump has that race; here it failed a query).
local function dump(dic, path)
  local part = ("%s.%d"):format(path, mp.getpid())
  local f = assert(io.open(part, "w"))
  f:write(('{ "ticket": %d }\n'):format(dic.ticket))
  f:close()
  assert(os.rename(part, path))
end

local function query_ticket(name)
  local dic = load(TICKETS)
  print(("%s 查询余票，余票数量为：%d"):format(name, dic.ticket))
end

local function buy_ticket(name)
  local dic = load(TICKETS)
  pace.sleep(pace.randint(1, 5)) -- network delay
  if dic.ticket > 0 then
    dic.ticket = dic.ticket - 1
    dump(dic, TICKETS)
    print(("%s 购买成功，余票数量为：%d"):format(name, dic.ticket))
  else
    print(("%s 购票失败，余票不足"):format(name))
  end
end

local function task(name, mutex)
  query_ticket(name)
  mutex:acquire() -- lock the purchase
  buy_ticket(name)
  mutex:release() -- and let the next one in
end

dump({ ticket = 2 }, TICKETS)
local mutex = mp.Lock()
local users = {}
for i = 1, 8 do
  users[i] = mp.Process{ target = task, args = { ("用户%d "):format(i), mutex } }
  users[i]:start()
end
for _, p in ipairs(users) do p:join() end
print(("tickets.json 最后的余票数量: %d"):format(load(TICKETS).ticket))
