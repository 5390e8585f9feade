-- Pools as a person sees them in a terminal: a task typed at the REPL, and
-- the progress bar. Runs under both start methods.
local H = require "spec.helper"
local Terminal = require "spec.terminal"

describe("Pool in a terminal (" .. H.method .. ")", function()
  local term, history

  -- Runs the script file in a new terminal.
  local function in_terminal(script)
    return Terminal.new(H.shell_quote(H.exe) .. " " .. H.shell_quote(script), { CORRAL_START_METHOD = H.method })
  end
  after_each(function()
    if term then term:kill() end
    term = nil
    if history then os.remove(history) end
    history = nil
    H.cleanup()
    H.assert_no_children()
  end)

  it("runs a function typed at the REPL as a task", function()
    history = os.tmpname()
    term = Terminal.new(H.shell_quote(H.exe), { CORRAL_START_METHOD = H.method, CORRAL_HISTORY = history })
    term:wait_match("\n> ")
    term:send_line("pool = corral.Pool(2)")
    term:send_line("f = function(x) return x * 10 + corral.getpid() % 1 end")
    term:send_line("r = pool:map(f, {1, 2, 3})")
    term:send_line("print('got', table.concat(r, ','))")
    term:wait_match("got%s+10,20,30")
    term:send_line("print('sum', pool:apply(function(a, b) return a + b end, 40, 2))")
    term:wait_match("sum%s+42")
    term:send_line("pool:terminate(); os.exit(0)")
    assert.truthy(term:exited(), term:screen())
  end)

  it("draws a progress bar with done/total, rate and ETA", function()
    local script = H.script([[
      local mp = require "corral"
      local pool <close> = mp.Pool(2)
      local items = {}
      for i = 1, 40 do items[i] = i end
      local r = pool:map(function(x) mp.sleep(0.01) return x end, items, 1, { progress = true })
      print("mapped " .. #r)
    ]])
    term = in_terminal(script)
    term:wait_match("mapped 40")
    local screen = term:screen()
    assert.matches("%[#+%] 40/40 [%d%.]+/s in [%d%.]+s", screen)
  end)

  it("counts failed tasks in the bar, which keeps the last row while workers write above it", function()
    local script = H.script([[
      local mp = require "corral"
      local pool <close> = mp.Pool(2)
      print("started")
      local items = {}
      for i = 1, 20 do items[i] = i end
      local ok = pcall(pool.map, pool, function(x)
        if x == 4 then io.stderr:write("worker line\n") mp.sleep(3) end
        if x == 7 or x == 13 then error("bad") end
        return x
      end, items, 1, { progress = true })
      print("mapped " .. tostring(ok))
    ]])
    term = in_terminal(script)
    -- while the worker sleeps after its line: the line on its own, the bar
    -- on the terminal's last row
    local visible
    assert.truthy(H.wait_until(function()
      visible = term:tmux("capture-pane -p -t t")
      return visible:match("\nworker line\n") and visible:match("\n%[[#.]+%] %d+/20[^\n]*\n?$")
    end, 30), visible)
    term:wait_match("mapped false")
    local screen = term:screen()
    assert.matches("%[#+%] 20/20 %(2 failed%) [%d%.]+/s in [%d%.]+s\nmapped false", screen)
    assert.not_matches("ETA %d+sworker", screen) -- never glued to the bar
    assert.matches("\nworker line\n", screen)
  end)

  it("draws nothing when stderr is not a terminal", function()
    local script = H.script([[
      local mp = require "corral"
      local pool <close> = mp.Pool(2)
      print(#pool:map(function(x) return x end, { 1, 2, 3 }, 1, { progress = true }))
    ]])
    local out, err, code = H.run({ script }, nil, { CORRAL_START_METHOD = H.method })
    assert.are.equal(0, code, err)
    assert.are.equal("3\n", out)
    assert.are.equal("", err)
  end)
end)
