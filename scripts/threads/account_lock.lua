-- Seed 003_3244e5ca5ef63fea.txt, "### Python中的多线程", the bank account
-- with a lock.
-- Teaches: the account holds a Lock; deposit takes it before reading the
-- balance and releases it after writing (in Python's finally: here the
-- body runs under pcall and the lock is released whatever happened), so
-- the 100 deposits of 1 yuan give exactly 100.
-- Why processes: Lua has no preemptive threads (a Lua state runs one
-- coroutine at a time, switching only where the code yields); the 100
-- threads become 100 processes, the balance a shared Value and the lock a
-- corral Lock, as in scripts/threads/account_race.lua, which differs only
-- by the lock. Sleeps are scaled by CORRAL_TIME_SCALE.
--   corral scripts/threads/account_lock.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local Account = {}
Account.__index = Account

function Account.new()
  return setmetatable({ _balance = mp.Value("i", 0), _lock = mp.Lock() }, Account)
end

function Account:deposit(money)
  -- take the lock before the rest
  self._lock:acquire()
  local ok, err = pcall(function()
    local new_balance = self._balance.value + money
    pace.sleep(0.01)
    self._balance.value = new_balance
  end)
  -- released in every case, as in a finally block
  self._lock:release()
  if not ok then error(err, 0) end
end

function Account:balance()
  return self._balance.value
end

local AddMoneyProcess = mp.Process:extend()

function AddMoneyProcess:init(account, money, go)
  self._account, self._money, self._go = account, money, go
end

function AddMoneyProcess:run()
  self._go:wait()
  self._account:deposit(self._money)
end

local function main()
  local account = Account.new()
  local go = mp.Event()
  local depositors = {}
  for i = 1, 100 do
    depositors[i] = AddMoneyProcess(account, 1, go)
    depositors[i]:start()
  end
  go:set()
  for _, t in ipairs(depositors) do t:join() end
  print(("账户余额为: ￥%d元"):format(account:balance()))
end

main()
