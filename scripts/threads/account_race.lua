-- Seed 003_3244e5ca5ef63fea.txt, "### Python中的多线程", the bank account
-- without a lock (the wrong example).
-- Teaches: 100 depositors each add 1 yuan to one account; each reads the
-- balance, takes 0.01 s to "process", then writes balance + 1, so most
-- deposits overwrite each other and the balance ends far below 100.
-- Why processes: Lua has no preemptive threads (a Lua state runs one
-- coroutine at a time, switching only where the code yields), so the 100
-- threads become 100 processes, and the account's balance, which threads
-- would share for free, lives in shared memory (a Value). The Account and
-- AddMoneyProcess classes keep the original's shape. A process takes
-- longer to start than the 0.01 s pause under a small CORRAL_TIME_SCALE,
-- so the depositors start together at an Event (threads in the original
-- practically do).
--   corral scripts/threads/account_race.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local Account = {}
Account.__index = Account

function Account.new()
  return setmetatable({ _balance = mp.Value("i", 0) }, Account)
end

function Account:deposit(money)
  -- the balance after the deposit
  local new_balance = self._balance.value + money
  -- processing the deposit takes 0.01 s
  pace.sleep(0.01)
  -- update the balance
  self._balance.value = new_balance
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
  -- 100 depositors, one account
  for i = 1, 100 do
    depositors[i] = AddMoneyProcess(account, 1, go)
    depositors[i]:start()
  end
  go:set()
  -- wait for every deposit
  for _, t in ipairs(depositors) do t:join() end
  print(("账户余额为: ￥%d元"):format(account:balance()))
end

main()
