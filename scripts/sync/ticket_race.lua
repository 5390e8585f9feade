-- Seed 004_75a4847c33e52956.txt, "### 互斥锁", main.py and tickets.json
-- (the wrong example).
-- Teaches: 8 users buy from 2 tickets kept in a file, with no lock: each
-- reads the count, waits (network delay), then writes count - 1, so every
-- user "buys" and the file ends at 1: the tickets are oversold.
-- The port writes tickets.json ({ "ticket": 2 }) into a private temporary
-- directory (scripts/lib/tmpdir.lua) and removes it at the end; Lua has no
-- json module, so the one-field file is read and written with a pattern.
-- Processes take longer to start than the random delay under a small
-- CORRAL_TIME_SCALE, so the users start together at an Event (at the
-- original pace they practically do). The original never joins its
-- children (Python joins them at exit); the port joins them before the
-- directory is removed.
--   corral scripts/sync/ticket_race.lua
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

-- query the tickets left
local function query_ticket(name)
  local dic = load(TICKETS)
  print(("%s 查询余票数量为 %d"):format(name, dic.ticket))
end

local function buy_ticket(name)
  local dic = load(TICKETS)
  pace.sleep(pace.randint(1, 3)) -- network delay
  if dic.ticket > 0 then
    dic.ticket = dic.ticket - 1
    dump(dic, TICKETS)
    print(("%s 购买一张余票，余票数量为 %d"):format(name, dic.ticket))
  else
    print(("余票不足，%s买票失败"):format(name))
  end
end

local function common(name, go)
  go:wait()
  query_ticket(name)
  buy_ticket(name)
end

dump({ ticket = 2 }, TICKETS) -- tickets.json
local go = mp.Event()
local users = {}
for i = 1, 8 do
  users[i] = mp.Process{ target = common, args = { ("用户%d "):format(i), go } }
  users[i]:start()
end
go:set()
for _, p in ipairs(users) do p:join() end
print(("tickets.json 最后的余票数量: %d"):format(load(TICKETS).ticket))
