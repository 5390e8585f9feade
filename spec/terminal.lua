-- A terminal for specs: tmux on a private socket runs a command in a pane;
-- keys go in, the screen is read back until expected text shows up (with a
-- timeout). kill() ends the server and removes its socket.
local H = require "spec.helper"

local Terminal = {}
Terminal.__index = Terminal

-- Terminal.new(command, {env=}) -> terminal running `command` in a 200x50 pane
function Terminal.new(command, env)
  local self = setmetatable({ socket = ("corral-term-%d-%d"):format(H.mp.getpid(), math.random(1e9)) }, Terminal)
  local envs = ""
  for k, v in pairs(env or {}) do envs = envs .. k .. "=" .. H.shell_quote(v) .. " " end
  self:tmux("new-session -d -s t -x 200 -y 50 " .. H.shell_quote("exec env " .. envs .. command))
  self:tmux("set-option -t t remain-on-exit on")
  self.path = self:tmux("display-message -p -t t '#{socket_path}'"):match("[^\n]+")
  return self
end

-- Runs a tmux command on this terminal's server (never under a sanitizer's
-- LD_PRELOAD: the executable links the sanitizers itself).
function Terminal:tmux(args)
  local f = io.popen("env -u LD_PRELOAD tmux -L " .. self.socket .. " " .. args .. " 2>&1")
  local out = f:read("a")
  f:close()
  return out
end

function Terminal:screen() return self:tmux("capture-pane -p -J -S -2000 -t t") end

-- Waits until the screen matches the Lua pattern; errors with the screen.
function Terminal:wait_match(pat, timeout)
  if not H.wait_until(function() return self:screen():match(pat) ~= nil end, timeout or 30) then
    error(("timed out waiting for /%s/; the screen:\n%s"):format(pat, self:screen()), 2)
  end
end

function Terminal:send_line(s)
  self:tmux("send-keys -t t -l " .. H.shell_quote(s))
  self:tmux("send-keys -t t Enter")
end

-- Whether the pane's process has ended (reaped or not: tmux may be late
-- to reap it), waiting up to `timeout` seconds.
function Terminal:exited(timeout)
  local pid = tonumber(self:tmux("display-message -p -t t '#{pane_pid}'"):match("%d+"))
  return H.wait_until(function()
    local f = io.open("/proc/" .. pid .. "/stat")
    if not f then return true end
    local st = f:read("a")
    f:close()
    return st:match("^%d+ %b() (%a)") == "Z"
  end, timeout or 30)
end

function Terminal:kill()
  self:tmux("kill-server")
  if self.path then os.remove(self.path) end
end

return Terminal
