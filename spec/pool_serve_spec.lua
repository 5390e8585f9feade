-- Pools served from the engine's loop: results come in and callbacks run
-- while the caller waits in any corral call (sleep, a queue's get, a lock,
-- an event, a join), with no get; ready() takes in what already arrived.
-- Runs under both start methods.
local H = require "spec.helper"
local mp = H.mp

local LIMIT = 10 -- seconds: far more than any of these takes when it works

local function double(x) return 2 * x end

describe("Pool served in every wait (" .. H.method .. ")", function()
  after_each(function()
    collectgarbage()
    H.cleanup()
    H.assert_no_children()
  end)

  it("ready() turns true while the caller only polls it between sleeps", function()
    local pool <close> = mp.Pool(2)
    local ar = pool:apply_async(double, { 21 })
    assert.is_true(H.wait_until(function() return ar:ready() end, LIMIT))
    assert.is_true(ar:successful())
    assert.are.equal(42, ar:get(0))
  end)

  it("a callback runs during mp.sleep, with no get", function()
    local pool <close> = mp.Pool(2)
    local got
    pool:map_async(double, { 1, 2, 3 }, nil, { callback = function(r) got = r end })
    -- H.wait_until only sleeps and looks at `got`: nothing else serves the pool
    assert.is_truthy(H.wait_until(function() return got end, LIMIT))
    assert.are.same({ 2, 4, 6 }, got)
  end)

  it("a callback runs during q:get: the item it puts is what the get returns", function()
    local pool <close> = mp.Pool(2)
    local q = mp.Queue()
    pool:apply_async(double, { 5 }, { callback = function(v) q:put(v) end })
    assert.are.equal(10, q:get(LIMIT))
  end)

  it("a callback runs during lock:acquire: it releases the lock waited for", function()
    local pool <close> = mp.Pool(2)
    local lock = mp.Lock()
    assert.is_true(lock:acquire())
    pool:apply_async(double, { 1 }, { callback = function() lock:release() end })
    assert.is_true(lock:acquire(LIMIT))
    lock:release()
  end)

  it("an error_callback runs during event:wait", function()
    local pool <close> = mp.Pool(2)
    local ev = mp.Event()
    local kind
    pool:apply_async(function() error("no") end, {}, {
      error_callback = function(e) kind = e.kind; ev:set() end })
    assert.is_true(ev:wait(LIMIT))
    assert.are.equal("RemoteError", kind)
  end)

  it("a callback runs during p:join: it lets the joined process end", function()
    local pool <close> = mp.Pool(2)
    local q = mp.Queue()
    local p = H.start(function(qq) qq:get() end, q)
    pool:apply_async(double, { 1 }, { callback = function() q:put("go") end })
    assert.is_true(p:join(LIMIT))
    assert.are.equal(0, p.exitcode)
  end)

  it("a worker killed while the caller only sleeps is replaced, and its task fails", function()
    local pool <close> = mp.Pool(1)
    local err
    local ar = pool:apply_async(function() mp.sleep(60) end, {}, { error_callback = function(e) err = e end })
    local pid = H.wait_until(function()
      local ps = H.child_pids()
      return #ps > 0 and ps[1]
    end, LIMIT)
    assert.is_truthy(pid)
    os.execute("kill -9 " .. pid)
    assert.is_truthy(H.wait_until(function() return err end, LIMIT))
    assert.are.equal("WorkerLost", err.kind)
    assert.is_true(ar:ready())
    assert.are.equal(7, pool:apply(function() return 7 end))
  end)

  it("Ctrl-C while a callback runs inside a wait interrupts that wait", function()
    local script = H.script([[
      local mp = require "corral"
      local pool = mp.Pool(1)
      local lock = mp.Lock()
      lock:acquire()
      pool:apply_async(function() return 1 end, {}, { callback = function()
        print("callback " .. mp.getpid()); io.stdout:flush()
        local t = mp.time()
        while mp.time() - t < 1 do end -- still in the callback when SIGINT comes
      end })
      local ok, err = pcall(lock.acquire, lock) -- held already: only Ctrl-C ends it
      print(ok, mp.iserror(err, "Interrupted"))
      pool:terminate()
    ]])
    local out = H.interrupted(script, 0)
    assert.are.equal("false\ttrue\n", out)
  end)

  it("Ctrl-C in map kills the workers running its tasks, and no wait in between serves them twice", function()
    -- _abandon joins each killed worker: the pool's watch must not take
    -- them in (and close them) inside that join.
    local script = H.script([[
      local mp = require "corral"
      local pool = mp.Pool(4)
      print("pid " .. mp.getpid()); io.stdout:flush()
      local ok, err = pcall(pool.map, pool, function()
        io.stdout:write("started\n"); io.stdout:flush(); mp.sleep(60)
      end, { 1, 2, 3, 4 }, 1)
      -- Interrupted when SIGINT came during a corral wait, lua5.4's own
      -- "interrupted!" when it came between two (iserror takes both): the
      -- pool gives up the job
      print(ok, mp.iserror(err, "Interrupted"))
      print(pool:apply(function() return 7 end))
      pool:terminate()
    ]])
    local out = H.interrupted(script, 4)
    assert.are.equal("false\ttrue\n7\n", out)
  end)

  it("an error raised by a callback is printed with its traceback and the wait goes on", function()
    local path = H.script([[
      local mp = require "corral"
      local pool <close> = mp.Pool(1)
      local q = mp.Queue()
      pool:apply_async(function() return 1 end, {}, { callback = function() error("cb failed") end })
      pool:apply_async(function() return 2 end, {}, { callback = function(v) q:put(v) end })
      print(q:get(10))
    ]])
    local out, err, code = H.run({ path }, nil, { CORRAL_START_METHOD = H.method })
    assert.are.equal(0, code)
    assert.are.equal("2\n", out)
    assert.matches("corral: error in a callback: .*cb failed", err)
    assert.matches("stack traceback:", err)
  end)
end)
