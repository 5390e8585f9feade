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

local KILLED_WORKER = [[
  local mp = require "corral"
  %s
  local pool = mp.Pool(2)
  pool:map(function(x) return x end, { 1, 2, 3, 4 }, 1)
  local started, victim = mp.Event(), mp.Value("i", 0)
  local ar = pool:apply_async(function(e, v) v.value = mp.getpid(); e:set(); mp.sleep(60) end, { started, victim })
  assert(started:wait(30))
  os.execute("kill -9 " .. victim.value)
  local ok, err = pcall(ar.get, ar)
  assert(not ok and mp.iserror(err, "WorkerLost"), tostring(err))
  assert(pool:apply(function() return 7 end) == 7)
  print("victim " .. victim.value .. " main " .. mp.getpid())
  -- the workers are left to the at-exit policy
]]

describe("log (" .. H.method .. ")", function()
  after_each(function()
    collectgarbage()
    H.assert_no_children()
    H.cleanup()
  end)

  it("at info, a pool with a killed worker logs starts, the death, the lost task, the replacement, the exits", function()
    local out, err, code = H.run({ H.script(KILLED_WORKER:format([[mp.log_to_stderr("info")]])) })
    assert.are.equal(0, code, err)
    local victim, main = out:match("victim (%d+) main (%d+)")
    victim, main = tonumber(victim), tonumber(main)
    local lines = parse(err)
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
    local out, err, code = H.run({ H.script(KILLED_WORKER:format("")) })
    assert.are.equal(0, code, err)
    assert.truthy(out:match("victim %d+"))
    assert.are.equal(0, #parse(err), err)
  end)

  it("levels: debug adds the pool's own lines; user messages go through the same logger", function()
    local out, err, code = H.run({ H.script([[
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
    ]]) })
    assert.are.equal(0, code, err)
    local lines = parse(err)
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
    local out, err, code = H.run({ H.script([[
      local mp = require "corral"
      mp.log_to_stderr("info")
      local e = mp.Event()
      local p = mp.Process{ name = "slow", target = function(ev) ev:wait(30) end, args = { e } }
      p:start()
      print(p.pid)
      e:set()
    ]]) })
    assert.are.equal(0, code, err)
    local lines = parse(err)
    local pid = out:match("%d+")
    local joining = find(lines, "^at exit: joining slow %(pid " .. pid .. "%)$", "INFO")
    local exited = find(lines, "^slow %(pid " .. pid .. "%) exited with exitcode 0$", "INFO")
    -- the child may have ended before the join: then there is nothing to join
    assert.is_table(exited, all(lines))
    if joining then assert.truthy(err:find(joining.line, 1, true) < err:find(exited.line, 1, true)) end
  end)

  it("logs a lock taken over from a holder that died (OwnerDied)", function()
    local _, err, code = H.run({ H.script([[
      local mp = require "corral"
      mp.log_to_stderr("warning")
      local lock = mp.Lock()
      local p = mp.Process{ target = function(l) l:acquire(); os.exit(3) end, args = { lock } }
      p:start()
      p:join()
      local ok, e = pcall(lock.acquire, lock)
      assert(not ok and mp.iserror(e, "OwnerDied"), tostring(e))
    ]]) })
    assert.are.equal(0, code, err)
    assert.is_table(find(parse(err), "^Lock%.acquire: took over a lock whose holder died %(OwnerDied%)$", "WARNING"), err)
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
