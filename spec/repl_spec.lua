-- The REPL, driven through a terminal: tmux on a private socket runs
-- `corral` in a pane, keys are sent to it, and the screen is read back until
-- the expected text shows up (with a timeout). Every test kills its tmux
-- server and checks that the corral process has ended.
local H = require "spec.helper"
local mp = H.mp

local SOCKET = "corral-spec-" .. mp.getpid()
-- Without the sanitizers' LD_PRELOAD (the executable links them itself).
local TMUX = "env -u LD_PRELOAD tmux -L " .. SOCKET
local socket_path -- removed at the end: kill-server may leave it

local function tmux(args)
  local f = io.popen(TMUX .. " " .. args .. " 2>&1")
  local out = f:read("a")
  f:close()
  return out
end

local function screen()
  return tmux("capture-pane -p -J -S -2000 -t repl")
end

-- Waits until the screen shows `text` (plain); fails with the screen.
local function wait_for(text, timeout)
  local found = H.wait_until(function() return screen():find(text, 1, true) ~= nil end, timeout or 15)
  if not found then
    error(("timed out waiting for %q; the screen:\n%s"):format(text, screen()), 2)
  end
end

-- Waits until the screen matches the Lua pattern `pat`.
local function wait_match(pat, timeout)
  local found = H.wait_until(function() return screen():match(pat) ~= nil end, timeout or 15)
  if not found then
    error(("timed out waiting for /%s/; the screen:\n%s"):format(pat, screen()), 2)
  end
end

local function send_line(s)
  tmux("send-keys -t repl -l " .. H.shell_quote(s))
  tmux("send-keys -t repl Enter")
end

local function send_keys(keys) tmux("send-keys -t repl " .. keys) end

-- Ctrl-C, then line s and Enter typed right behind it (one tmux call).
local function ctrl_c_then_line(s)
  tmux("send-keys -t repl C-c \\; send-keys -t repl -l " .. H.shell_quote(s) .. " \\; send-keys -t repl Enter")
end

-- Whether a process has ended (read from /proc: ps must not run under the
-- sanitizers' LD_PRELOAD); tmux may be late reaping the pane's process (it
-- sometimes misses the SIGCHLD until another one).
local ended = H.ended

local history, pane_pid

-- Starts corral in a new pane (the server too, the first time) and waits
-- for its prompt.
local function start_repl(method, env)
  local cmd = ("exec env CORRAL_HISTORY=%s CORRAL_START_METHOD=%s %s %s"):format(
    H.shell_quote(history), method or H.method, env or "", H.shell_quote(H.exe))
  tmux("new-session -d -s repl -x 200 -y 50 " .. H.shell_quote(cmd))
  tmux("set-option -t repl remain-on-exit on") -- the screen stays readable after the end
  pane_pid = tonumber(tmux("display-message -p -t repl '#{pane_pid}'"):match("%d+"))
  socket_path = tmux("display-message -p -t repl '#{socket_path}'"):match("[^\n]+")
  assert.truthy(pane_pid)
  wait_for("\n> ")
end

local function stop_repl()
  tmux("kill-server")
  if socket_path then
    os.remove(socket_path)
    os.remove(socket_path:match("^(.*)/")) -- tmux's directory, when nothing else is in it
  end
  if pane_pid then assert.truthy(ended(pane_pid), "corral left running: " .. pane_pid) end
  pane_pid = nil
end

describe("REPL (" .. H.method .. ")", function()
  before_each(function()
    history = os.tmpname()
    os.remove(history) -- the REPL creates it
  end)

  after_each(function()
    stop_repl()
    os.remove(history)
    H.assert_no_children()
  end)

  it("shows the version, then prints the value of an expression", function()
    start_repl()
    assert.matches("^corral %S+ %(Lua 5%.4", screen())
    send_line("1 + 1")
    wait_for("> 1 + 1\n2\n> ")
    send_line("'a' .. 'b', nil, 3.5")
    wait_match('\n"ab"%s+nil%s+3%.5\n> ') -- tabs are spaces on the screen
  end)

  it("prints =expr, and nothing for a statement", function()
    start_repl()
    send_line("x = 6 * 7")
    send_line("=x")
    wait_for("> x = 6 * 7\n> =x\n42\n> ")
  end)

  it("reads a multi-line function with the second prompt", function()
    start_repl()
    send_line("function add(a, b)")
    wait_for("\n>> ")
    send_line("  local s = a + b")
    send_line("  return s")
    send_line("end")
    send_line("add(2, 3)")
    wait_for(">> end\n> add(2, 3)\n5\n> ")
  end)

  it("pretty-prints tables: nested, keys sorted, cycles marked", function()
    start_repl()
    send_line("t = {3, 1, k10 = 1, k2 = 2, ['a b'] = 'x', nested = {deep = {true}}}")
    send_line("t")
    wait_for('> t\n{ 3, 1, ["a b"] = "x", k2 = 2, k10 = 1, nested = { deep = { true } } }\n> ')
    send_line("c = {1, {}}; c[2].up = c; c.me = c")
    send_line("=c")
    wait_for('> =c\n{ 1, { up = <cycle> }, me = <cycle> }\n> ')
    send_line("big = {} for i = 1, 8 do big['key' .. i] = ('v'):rep(12) end")
    send_line("=big")
    wait_for('\n{\n  key1 = "vvvvvvvvvvvv",\n  key2 = "vvvvvvvvvvvv",\n')
    wait_for('  key8 = "vvvvvvvvvvvv"\n}\n> ')
    send_line("=corral.Process{name = 'w'}")
    wait_for("\n<Process name='w' pid=nil initial>\n")
  end)

  it("reports an error with its traceback, then goes on", function()
    start_repl()
    send_line("error('boom')")
    wait_for("> error('boom')\nstdin:1: boom\nstack traceback:\n")
    send_line("local p = corral.Process{}; p:join()")
    wait_for("stdin:1: StateError: can only join a started process\n")
    send_line("=40 + 2")
    wait_for("> =40 + 2\n42\n> ")
  end)

  it("cancels the line with Ctrl-C, and interrupts running code", function()
    start_repl()
    tmux("send-keys -t repl -l 'half typed'")
    wait_for("> half typed")
    -- the next line, typed right behind the Ctrl-C, goes to a new line,
    -- not into the cancelled one
    ctrl_c_then_line("while true do end")
    wait_for("> half typed\n> while true do end\n")
    send_keys("C-c")
    wait_for("> while true do end\n^Cstdin:1: Interrupted: interrupted by a signal\n> ")
    send_line("=1 + 2")
    wait_for("> =1 + 2\n3\n> ")
    assert.not_matches("half typed[^\n]*\n[^\n]*error", screen())
  end)

  it("cancels the line with Ctrl-C in vi mode too, inserting and in command mode", function()
    local inputrc = os.tmpname()
    local f = assert(io.open(inputrc, "w"))
    f:write("set editing-mode vi\n")
    f:close()
    finally(function() os.remove(inputrc) end)
    start_repl(nil, "INPUTRC=" .. H.shell_quote(inputrc))
    tmux("send-keys -t repl -l 'half typed'")
    wait_for("> half typed")
    ctrl_c_then_line("=1 + 2")
    wait_for("> half typed\n> =1 + 2\n3\n> ")
    tmux("send-keys -t repl -l 'more typed'")
    wait_for("> more typed")
    send_keys("Escape") -- command mode
    ctrl_c_then_line("=2 + 2")
    wait_for("> more typed\n> =2 + 2\n4\n> ")
  end)

  it("Ctrl-C in a pool call cancels its tasks, replaces the workers running them, prints one line", function()
    start_repl()
    send_line("pool = corral.Pool(2)")
    send_line([[pool:map(function() io.stderr:write("task started\n") corral.sleep(60) end, {1, 2, 3, 4}, 1)]])
    wait_match("task started\n.*task started\n")
    send_keys("C-c")
    wait_match("\n%^Cstdin:1: Interrupted: [^\n]*\n> ")
    -- the next call runs at once: the four 60 s tasks are gone
    send_line("t = corral.time(); r = pool:map(function(x) return x * 2 end, {1, 2, 3}); "
      .. "print('took', corral.time() - t < 10, r[3], #corral.active_children())")
    wait_match("\ntook%s+true%s+6%s+2\n> ") -- (the terminal shows tabs as spaces)
    send_line([[for v in pool:imap(function(x) io.stderr:write("imap started\n") corral.sleep(60) end, {1, 2, 3}) do end]])
    wait_match("imap started\n.*imap started\n")
    send_keys("C-c")
    wait_match("\n%^Cstdin:1: Interrupted: [^\n]*\n> ")
    send_line("t = corral.time(); print('took', pool:apply(function(x) return x * 2 end, 4), corral.time() - t < 10)")
    wait_match("\ntook%s+8%s+true\n> ")
  end)

  it("runs in a pool a recursive global function typed after the pool was made, with the globals it names", function()
    start_repl()
    send_line("pool = corral.Pool(2)")
    send_line("function fact(n) if n <= 1 then return 1 end return n * fact(n - 1) end")
    send_line("limit = 3")
    send_line("=pool:map(function(x) return fact(x) + limit end, {1, 2, 3, 4})")
    wait_for("\n{ 4, 5, 9, 27 }\n> ")
    send_line("t = {5, 6}")
    send_line("function pick(i) return t[i] end")
    send_line("=pool:apply(pick, 2)")
    wait_for("> =pool:apply(pick, 2)\n6\n> ")
  end)

  it("completes names and paths with Tab", function()
    start_repl()
    tmux("send-keys -t repl -l '=corral.get_start_me'")
    send_keys("Tab")
    wait_for("> =corral.get_start_method")
    send_line("()")
    wait_for('> =corral.get_start_method()\n"' .. H.method .. '"\n> ')
    send_line("obj = setmetatable({}, {__index = {alpha = 1}})")
    tmux("send-keys -t repl -l '=obj.al'")
    send_keys("Tab")
    send_keys("Enter")
    wait_for("> =obj.alpha\n1\n> ")
  end)

  for _, method in ipairs{ "fork", "spawn" } do
    it("starts a Process whose target was typed at the prompt (" .. method .. ")", function()
      start_repl(method)
      send_line("=corral.get_start_method()")
      wait_for('\n"' .. method .. '"\n')
      send_line("f = function(x) print(x * 2) end")
      send_line("p = corral.Process{target = f, args = {21}}; p:start(); p:join()")
      wait_for("p:join()\n42\n> ")
      send_line("=p.exitcode")
      wait_for("> =p.exitcode\n0\n> ")
    end)
  end

  it("joins the children when the REPL is left with Ctrl-D", function()
    start_repl()
    local mark = os.tmpname()
    os.remove(mark)
    finally(function() os.remove(mark) end) -- the child writes it, also when a check below fails
    send_line(("corral.Process{target = function() corral.sleep(0.2); "
      .. "local f = io.open(%q, 'w'); f:write('done'); f:close(); print('child done') end}:start()"):format(mark))
    send_keys("C-d")
    assert.truthy(ended(pane_pid, 15), "corral did not end")
    -- corral ended after its child: the child's file is already there
    local f = io.open(mark)
    assert.truthy(f, "corral ended before its child")
    assert.are.equal("done", f:read("a"))
    f:close()
    os.remove(mark)
    wait_for("child done\n")
  end)

  it("saves the history to $CORRAL_HISTORY and reads it back", function()
    start_repl()
    send_line("=10 + 1")
    send_line("function twice(x)")
    send_line("return 2 * x end")
    wait_for("\n> ")
    send_keys("C-d")
    assert.truthy(ended(pane_pid, 15))
    local f = assert(io.open(history))
    local text = f:read("a")
    f:close()
    assert.matches("=10 + 1\n", text, 1, true)
    assert.matches("function twice(x)\nreturn 2 * x end\n", text, 1, true)
    stop_repl()
    start_repl()
    send_keys("Up") -- one entry, shown over two lines
    wait_for("> function twice(x)\nreturn 2 * x end")
    send_keys("Up")
    wait_for("> =10 + 1")
    send_keys("Enter")
    wait_for("\n11\n> ")
  end)
end)
