-- Pool on Redis: the Pool API with local workers and workers on other
-- "machines" (`corral worker` processes sharing no arena with the spec),
-- no task lost when workers are killed, exactly one result per task, a
-- live slow worker keeping its claim, a server restart, max_deliveries and
-- the dead-letter stream, signing and named tasks.
local H = require "spec.helper"
local R = require "spec.redis_helper"
local mp = H.mp
local error, tostring, os, io, require = error, tostring, os, io, require

local names = 0
local function pname()
  names = names + 1
  return ("p%d-%d"):format(mp.getpid(), names)
end

local KEY = "spec-key"

local kind_of = R.kind_of

-- `corral worker URL/name --workers n` on another "machine".
-- `corral worker URL/name --workers n` on another "machine".
local function remote_workers(url, name, n, env)
  local m = R.spawn({ "worker", url .. "/" .. name, "--workers", tostring(n) }, env)
  m.workers = function()
    return H.child_pids(m.pid)
  end
  assert(H.wait_until(function() return #m.workers() == n end, 10), "the remote workers did not start")
  m.stop = function()
    m.kill("INT")
    return m.wait()
  end
  return m
end

local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

describe("a Redis Pool", function()
  local srv = R.server()

  it("keeps the Pool API with local workers (" .. H.method .. ")", function()
    local pool <close> = mp.Pool(2, { broker = srv.url, name = pname(), authkey = KEY })
    assert.same({ 7, 12 }, { pool:apply(function(a, b) return a + b, a * b end, 3, 4) })
    assert.same({ 1, 4, 9 }, pool:map(function(x) return x * x end, { 1, 2, 3 }))
    assert.same({ 3, 7 }, pool:starmap(function(a, b) return a + b end, { { 1, 2 }, { 3, 4 } }))
    local got = {}
    for v in pool:imap(function(x) return -x end, range(10), 3) do got[#got + 1] = v end
    assert.same({ -1, -2, -3, -4, -5, -6, -7, -8, -9, -10 }, got)
    local n = 0
    for _ in pool:imap_unordered(function(x) return x end, range(5)) do n = n + 1 end
    assert.equal(5, n)
    local seen
    local ar = pool:map_async(function(x) return x + 1 end, { 1, 2 }, { callback = function(v) seen = v end })
    assert.same({ 2, 3 }, ar:get(10))
    assert.same({ 2, 3 }, seen)
    -- an AsyncResult's ready, wait and successful
    local later = pool:apply_async(function() return "done" end)
    assert.is_true(H.wait_until(function() return later:ready() end, 10))
    assert.is_true(later:wait(0))
    assert.is_true(later:successful())
    assert.equal("done", later:get(0))
    -- a task's own error, a time limit, and what cannot travel, as in the local Pool
    assert.equal("RemoteError", (kind_of(pool.apply, pool, function() error("boom") end)))
    local slow = pool:apply_async(function() while true do end end, {}, { timeout = 0.2 })
    assert.equal("Timeout", (kind_of(slow.get, slow, 10)))
    assert.equal("EncodeError", (kind_of(pool.apply, pool, function() end, coroutine.create(print))))
    pool:close()
    assert.is_true(pool:join(10))
  end)

  it("runs tasks on workers of another machine", function()
    local name = pname()
    local m = remote_workers(srv.url, name, 2, { CORRAL_AUTHKEY = KEY })
    local pool <close> = mp.Pool(0, { broker = srv.url, name = name, authkey = KEY })
    local pids = pool:map(function() return require("corral").getpid() end, range(50), 1)
    local remote = {}
    for _, pid in ipairs(m.workers()) do remote[pid] = true end
    for _, pid in ipairs(pids) do assert.is_true(remote[pid], "a task ran outside the remote workers") end
    local _, code = m.stop()
    assert.equal(0, code)
  end)

  it("loses no task and gives one result each while a remote worker is SIGKILLed every 0.3 s", function()
    local name = pname()
    local m = remote_workers(srv.url, name, 2, { CORRAL_AUTHKEY = KEY })
    local pool <close> = mp.Pool(0, { broker = srv.url, name = name, authkey = KEY, visibility = 0.5,
                                     max_deliveries = 20 })
    local N = 10000
    -- half a millisecond a task: the run lasts long enough for several kills
    local ar = pool:map_async(function(x) require("corral").sleep(0.0005) return x * 2 end, range(N), 1)
    local kills = 0
    while not ar:wait(0.3) do
      local w = m.workers()
      if #w > 0 then
        os.execute("kill -9 " .. w[1])
        kills = kills + 1
      end
    end
    local r = ar:get()
    assert.equal(N, #r)
    for i = 1, N do assert.equal(2 * i, r[i]) end
    local st = pool:stats()
    print(("\n  %d tasks, %d workers SIGKILLed: %d taken, %d executions ended, %d duplicate answers dropped"):format(
      N, kills, st.taken, st.executions, st.duplicates))
    assert.is_true(kills >= 3, "too few kills to mean anything: " .. kills)
    assert.is_true(st.executions >= N)
    assert.is_true(st.taken >= st.executions)
    assert.equal(0, st.dead)
    m.stop()
  end)

  it("does not take a live worker on a task longer than three visibility timeouts for dead", function()
    local pool <close> = mp.Pool(2, { broker = srv.url, name = pname(), authkey = KEY, visibility = 0.3 })
    assert.equal("done", pool:apply(function() require("corral").sleep(1.2) return "done" end))
    -- an answer that came twice would be counted; wait past another visibility timeout for one
    local extra = pool:apply_async(function() return 1 end)
    assert.equal(1, extra:get(10))
    mp.sleep(0.5)
    assert.equal(2, pool:executions())
    assert.equal(0, pool.duplicates)
  end)

  it("drops and counts the late answer of a worker that was taken for dead", function()
    local name = pname()
    local pidfile = os.tmpname()
    local pool <close> = mp.Pool(2, { broker = srv.url, name = name, authkey = KEY, visibility = 0.3 })
    local ar = pool:apply_async(function(path)
      local f = io.open(path, "w") f:write(require("corral").getpid()) f:close()
      require("corral").sleep(1)
      return "slept"
    end, { pidfile })
    local first
    assert.is_truthy(H.wait_until(function()
      local f = io.open(pidfile)
      first = f and tonumber(f:read("a"))
      if f then f:close() end
      return first
    end, 10))
    os.execute("kill -STOP " .. first)
    -- its heartbeat stops with it: another worker takes the task over and answers
    assert.equal("slept", ar:get(20))
    os.execute("kill -CONT " .. first)
    assert.is_true(H.wait_until(function()
      pool:apply(function() end)
      return pool.duplicates == 1
    end, 10), "the late answer was not seen")
    os.remove(pidfile)
  end)

  it("sends a task that keeps killing its worker to the dead-letter stream after max_deliveries", function()
    local pool <close> = mp.Pool(2, { broker = srv.url, name = pname(), authkey = KEY, visibility = 0.3,
                                     max_deliveries = 2 })
    local kind, err = kind_of(pool.apply, pool, function()
      os.execute("kill -9 " .. require("corral").getpid())
    end)
    assert.equal("WorkerLost", kind)
    assert.matches("max_deliveries = 2", err.message, 1, true)
    local dead = pool:dead_letters()
    assert.equal(1, #dead)
    assert.matches("delivered 2 times", dead[1].error, 1, true)
    -- the pool goes on
    assert.equal(4, pool:apply(function(x) return x * 2 end, 2))
  end)

  describe("code and keys", function()
    local marker
    before_each(function()
      marker = os.tmpname()
      os.remove(marker)
    end)
    after_each(function() os.remove(marker) end)

    local function touch_task(path)
      return function() local f = io.open(path, "w") f:write("ran") f:close() return "ran" end
    end

    it("refuses a task signed with another key, and never runs it", function()
      local name = pname()
      local m = remote_workers(srv.url, name, 1, { CORRAL_AUTHKEY = "the-workers-key" })
      local pool <close> = mp.Pool(0, { broker = srv.url, name = name, authkey = "another-key" })
      local kind, err = kind_of(pool.apply, pool, touch_task(marker))
      assert.equal("AuthError", kind)
      assert.matches("signature is wrong", err.message, 1, true)
      assert.is_nil(io.open(marker))
      local out = m.stop()
      assert.matches("refused task", out, 1, true)
    end)

    it("refuses unsigned bytecode, with a key or without one", function()
      local name = pname()
      local keyed = remote_workers(srv.url, name, 1, { CORRAL_AUTHKEY = KEY })
      local pool <close> = mp.Pool(0, { broker = srv.url, name = name, _unsigned = true })
      local kind, err = kind_of(pool.apply, pool, touch_task(marker))
      assert.equal("AuthError", kind)
      assert.matches("not signed", err.message, 1, true)
      keyed.stop()
      local bare = remote_workers(srv.url, name, 1)
      kind, err = kind_of(pool.apply, pool, touch_task(marker))
      assert.equal("AuthError", kind)
      assert.matches("carries code without a signature", err.message, 1, true)
      assert.is_nil(io.open(marker))
      bare.stop()
    end)

    it("runs a named task without a key", function()
      local dir = os.tmpname()
      os.remove(dir)
      os.execute("mkdir -p " .. dir)
      local f = io.open(dir .. "/spec_tasks.lua", "w")
      f:write("return { double = function(x) return 2 * x end, add = function(a, b) return a + b end }\n")
      f:close()
      local name = pname()
      local m = remote_workers(srv.url, name, 1, { LUA_PATH = dir .. "/?.lua;;", CORRAL_AUTHKEY = "" })
      local pool <close> = mp.Pool(0, { broker = srv.url, name = name, authkey = false })
      assert.equal(42, pool:apply("spec_tasks.double", 21))
      assert.same({ 2, 4, 6 }, pool:map("spec_tasks.double", { 1, 2, 3 }))
      assert.same({ 3 }, pool:starmap("spec_tasks.add", { { 1, 2 } }))
      assert.equal("ValueError", (kind_of(pool.apply, pool, "spec_tasks.nothing")))
      -- a function needs a key
      assert.equal("ValueError", (kind_of(pool.apply, pool, function() end)))
      m.stop()
      os.execute("rm -rf " .. dir)
    end)
  end)

  it("says which url refused the connection", function()
    local url = "redis://127.0.0.1:" .. (srv.port + 1)
    local kind, err = kind_of(mp.Pool, 1, { broker = url, name = "x" })
    assert.equal("ConnectionError", kind)
    assert.matches(url, err.message, 1, true)
  end)
end)

describe("a Redis Pool whose server restarts", function()
  local server = R.server{ appendonly = true }

  it("loses no acknowledged task, and the caller and workers recover", function()
    local pool <close> = mp.Pool(2, { broker = server.url, name = pname(), authkey = KEY })
    local N = 3000
    local ar = pool:map_async(function(x) return x + 1 end, range(N), 1)
    assert.is_true(H.wait_until(function() return pool:executions() > 100 end, 20))
    server.kill()
    server.launch()
    local r = ar:get(60)
    for i = 1, N do assert.equal(i + 1, r[i]) end
    assert.equal(5, pool:apply(function(x) return x end, 5))
  end)
end)
