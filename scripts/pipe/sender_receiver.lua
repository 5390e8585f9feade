-- Seed 001_a2c236ba738e7e5f.txt, "### 2. 管道（Pipe）".
-- Teaches: a Pipe joins two processes; the sender sends 0..4 and closes its
-- end; the receiver reads until the end of the stream, which corral
-- reports as recv() returning nil, "closed" (Python raises EOFError).
-- What the original got wrong: it hangs. The end of the stream comes only
-- when every copy of the sending end is closed, and two more stay open:
-- the parent's child_conn, and the one the forked receiver inherits. The
-- port closes both: the parent closes its ends once the children have
-- them, and the receiver closes the sending end it was given (which it
-- would otherwise inherit under fork) before reading.
-- Sleeps are scaled by CORRAL_TIME_SCALE (scripts/lib/pace.lua).
--   corral scripts/pipe/sender_receiver.lua
local mp = require "corral"
local pace = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/pace.lua")

local function sender(conn)
  for i = 0, 4 do
    print(("发送者: 发送了数据 %d"):format(i))
    conn:send(i)
    pace.sleep(0.5)
  end
  conn:close() -- close this end
end

local function receiver(conn, other_end)
  other_end:close() -- not ours: only the sender's copy may stay open
  while true do
    local data, why = conn:recv()
    if data == nil and why == "closed" then
      print("接收者: 管道已关闭")
      break
    end
    print(("接收者: 接收了数据 %d"):format(data))
    pace.sleep(1)
  end
end

-- a pipe: two connected ends
local parent_conn, child_conn = mp.Pipe()

local sender_process = mp.Process{ target = sender, args = { child_conn } }
local receiver_process = mp.Process{ target = receiver, args = { parent_conn, child_conn } }

sender_process:start()
receiver_process:start()
-- the children have their ends: the parent's copies must not keep the pipe open
parent_conn:close()
child_conn:close()

sender_process:join()
receiver_process:join()

print("所有进程执行完毕")
