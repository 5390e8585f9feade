-- The logger: mp.log_to_stderr(level) and mp.get_logger(), as Python's;
-- the lines the engine and a pool write, and their prefix. Off by default.
-- Runs under both start methods.
local H = require "spec.helper"
local mp = H.mp

-- "[HH:MM:SS.mmm LEVEL/name pid] message" -> {level=, name=, pid=, msg=}
local function parse(err)
  local lines = {}
  for line in err:gmatch("[^\n]+") do
    local level, name, pid, msg = line:match("^%[%d%d:%d%d:%d%d%.%d%d%d (%u+)/(.-) (%d+)%] (.*)$")
    if level then lines[#lines + 1] = { level = level, name = name, pid = tonumber(pid), msg = msg, line = line } end
  end
  return lines
end

local function find(lines, pattern, level)
  for _, l in ipairs(lines) do
    if l.msg:find(pattern) and (not level or l.level == level) then return l end
  end
  return nil
end

local function all(lines)
  local t = {}
  for _, l in ipairs(lines) do t[#t + 1] = l.line end
  return table.concat(t, "\n")
end

local killed_worker = require "spec.killed_worker"

-- Runs src with the corral executable; returns stdout, the log lines, stderr.
local function run(src)
  local out, err, code = H.run({ H.script(src) })
  assert.are.equal(0, code, err)
  return out, parse(err), err
end

describe("log (" .. H.method .. ")", function()
  after_each(function()
    collectgarbage()
    H.cleanup()
    H.assert_no_children()
  end)

  it("at info, a pool with a killed worker logs starts, the death, the lost task, the replacement, the exits", function()
    local out, lines = run(killed_worker([[mp.log_to_stderr("info")]]))
    local victim, main = out:match("victim (%d+) main (%d+)")
    victim, main = tonumber(victim), tonumber(main)
    for _, l in ipairs(lines) do
      assert.are.equal(main, l.pid)
      assert.are.equal("MainProcess", l.name)
      assert.is_true(l.level == "INFO" or l.level == "WARNING", l.line)
    end
    local method = H.method
    assert.is_table(find(lines, "^started Pool%-1 worker 1 %(pid %d+, " .. method .. ", daemon%)$", "INFO"), all(lines))
    assert.is_table(find(lines, "^started Pool%-1 worker 2 %(pid %d+, " .. method .. ", daemon%)$", "INFO"), all(lines))
    assert.is_table(find(lines, "^Pool%-1 worker %d %(pid " .. victim .. "%) was killed by signal 9$", "INFO"), all(lines))
    assert.is_table(find(lines, "^Pool%-1: task at item 1 lost with worker %d %(pid " .. victim
      .. "%): WorkerLost: worker pid " .. victim .. " was killed by signal 9", "WARNING"), all(lines))
    local rep = find(lines, "^Pool%-1: worker %d %(pid " .. victim .. "%) replaced by pid (%d+)$", "INFO")
    assert.is_table(rep, all(lines))
    local new = tonumber(rep.msg:match("replaced by pid (%d+)$"))
    assert.is_table(find(lines, "^started Pool%-1 worker %d %(pid " .. new .. ", "), all(lines))
    -- at exit the daemon workers are terminated, and their ends are logged
    assert.is_table(find(lines, "^at exit: terminating daemon Pool%-1 worker %d %(pid " .. new .. "%)$", "INFO"), all(lines))
    assert.is_table(find(lines, "^Pool%-1 worker %d %(pid " .. new .. "%) was killed by signal 15$", "INFO"), all(lines))
    -- nothing at debug
    assert.is_nil(find(lines, "^Pool%-1: starting"))
  end)

  it("is off by default: the same run writes no line", function()
    local out, lines, err = run(killed_worker())
    assert.truthy(out:match("victim %d+"))
    assert.are.equal(0, #lines, err)
  end)

  it("levels: debug adds the pool's own lines; user messages go through the same logger", function()
    local out, lines = run([[
      local mp = require "corral"
      local log = mp.get_logger()
      log:info("not yet")
      assert(mp.log_to_stderr("debug") == log)
      assert(log:get_level() == "debug")
      log:debug("a %s of %d", "message", 3)
      log:info("plain")
      log:set_level("warning")
      log:info("hidden")
      log:warning("careful %.1f", 2.5)
      log:error("bad")
      log:log("error", "by name")
      log:log(40, "by number")
      assert(log:is_enabled_for("error") and not log:is_enabled_for("info"))
      log:set_level("debug")
      local pool <close> = mp.Pool(1)
      pool:apply(function() end)
      local p = mp.Process{ name = "child", target = function() mp.get_logger():info("from the child") end }
      p:start()
      p:join()
      print(p.pid)
    ]])
    assert.is_nil(find(lines, "not yet"))
    assert.is_nil(find(lines, "hidden"))
    assert.is_table(find(lines, "^a message of 3$", "DEBUG"))
    assert.is_table(find(lines, "^plain$", "INFO"))
    assert.is_table(find(lines, "^careful 2%.5$", "WARNING"))
    assert.is_table(find(lines, "^bad$", "ERROR"))
    assert.is_table(find(lines, "^by name$", "ERROR"))
    assert.is_table(find(lines, "^by number$", "ERROR"))
    assert.is_table(find(lines, "^Pool%-1: starting 1 workers$", "DEBUG"))
    assert.is_table(find(lines, "^Pool%-1: worker 1 started %(pid %d+%)$", "DEBUG"))
    -- a child inherits the level and logs under its own name and pid
    local child = find(lines, "^from the child$", "INFO")
    assert.is_table(child, all(lines))
    assert.are.equal("child", child.name)
    assert.are.equal(tonumber(out:match("%d+")), child.pid)
    assert.is_table(find(lines, "^child %(pid " .. child.pid .. "%) exited with exitcode 0$", "INFO"))
  end)

  it("logs the at-exit join of a non-daemon child", function()
    -- the child outlives the script by up to half a second: the join waits for it
    local out, lines = run([[
      local mp = require "corral"
      mp.log_to_stderr("info")
      local p = mp.Process{ name = "slow", target = function(ev) ev:wait(0.5) end, args = { mp.Event() } }
      p:start()
      print(p.pid)
    ]])
    local pid = out:match("%d+")
    local joining = find(lines, "^at exit: joining slow %(pid " .. pid .. "%)$", "INFO")
    local exited = find(lines, "^slow %(pid " .. pid .. "%) exited with exitcode 0$", "INFO")
    assert.is_table(joining, all(lines))
    assert.is_table(exited, all(lines))
    local order = {}
    for i, l in ipairs(lines) do order[l] = i end
    assert.is_true(order[joining] < order[exited])
  end)

  it("logs a lock taken over from a holder that died (OwnerDied)", function()
    local _, lines, err = run([[
      local mp = require "corral"
      mp.log_to_stderr("warning")
      local lock = mp.Lock()
      local p = mp.Process{ target = function(l) l:acquire(); os.exit(3) end, args = { lock } }
      p:start()
      p:join()
      local ok, e = pcall(lock.acquire, lock)
      assert(not ok and mp.iserror(e, "OwnerDied"), tostring(e))
    ]])
    assert.is_table(find(lines, "^Lock%.acquire: took over a lock whose holder died %(OwnerDied%)$", "WARNING"), err)
  end)

  it("bad levels are ValueErrors", function()
    local log = require "corral.log"
    for _, bad in ipairs{ "loud", 0, -1, 1.5, true } do
      local ok, e = pcall(log.log_to_stderr, bad)
      assert.is_false(ok)
      assert.are.equal("ValueError", e.kind)
    end
    assert.are.equal("ValueError", select(2, pcall(mp.get_logger().set_level, mp.get_logger(), "x")).kind)
    assert.are.equal(mp.get_logger(), mp.get_logger())
  end)
end)
