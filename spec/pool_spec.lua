-- Pools: results and their order, chunking, lazy iteration, callbacks,
-- initializers, worker recycling, and every fault a pool must survive
-- without hanging. Runs under both start methods.
local H = require "spec.helper"
local mp = H.mp

local function square(x) return x * x end

local function errkind(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return mp.iserror(err) and err.kind or tostring(err), err
end

describe("Pool (" .. H.method .. ")", function()
  after_each(function()
    collectgarbage()
    H.cleanup()
    H.assert_no_children()
  end)

  describe("results", function()
    it("apply returns all of the function's results", function()
      local pool <close> = mp.Pool(2)
      local a, b, c = pool:apply(function(x, y) return x + y, x * y, nil end, 3, 4)
      assert.are.equal(7, a)
      assert.are.equal(12, b)
      assert.is_nil(c)
      assert.are.same({ "x", n = 1 }, { pool:apply(string.rep, "x", 1), n = 1 })
    end)

    it("map keeps the order over 100000 items", function()
      local pool <close> = mp.Pool(2)
      local list = {}
      for i = 1, 100000 do list[i] = i end
      local r = pool:map(square, list)
      assert.are.equal(100000, #r)
      for i = 1, 100000 do
        if r[i] ~= i * i then error(("r[%d] = %s"):format(i, tostring(r[i]))) end
      end
    end)

    it("map honours chunksize, and chunks of one", function()
      local pool <close> = mp.Pool(2)
      local list = {}
      for i = 1, 500 do list[i] = i end
      for _, cs in ipairs{ 1, 7, 500, 1000 } do
        local r = pool:map(function(x) return -x end, list, cs)
        assert.are.equal(500, #r)
        assert.are.equal(-1, r[1])
        assert.are.equal(-500, r[500])
      end
      -- a chunk is one task: with maxtasksperchild = 1, chunks of 10 over
      -- 30 items need three worker lifetimes
      local p2 <close> = mp.Pool(1, { maxtasksperchild = 1 })
      local pids = p2:map(function() return mp.getpid() end, { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, 5)
      assert.are.equal(pids[1], pids[5])
      assert.are_not.equal(pids[5], pids[6])
    end)

    it("starmap unpacks argument tables", function()
      local pool <close> = mp.Pool(2)
      local r = pool:starmap(function(a, b) return a .. b end, { { "a", "b" }, { "c", "d" }, { "e", 1 } })
      assert.are.same({ "ab", "cd", "e1" }, r)
      local ar = pool:starmap_async(math.max, { { 1, 5, 2 }, { 7, 3 } })
      assert.are.same({ 5, 7 }, ar:get(30))
    end)

    it("returns empty results for empty inputs at once", function()
      local pool <close> = mp.Pool(2)
      assert.are.same({}, pool:map(square, {}))
      assert.are.same({}, pool:starmap(square, {}))
      for _ in pool:imap(square, {}) do error("no item expected") end
      for _ in pool:imap_unordered(square, function() return nil end) do error("no item expected") end
      assert.are.same({}, pool:map_async(square, {}):get(0))
    end)

    it("gives every idle worker a task before queueing a second one", function()
      local pool <close> = mp.Pool(3)
      local ev = mp.Event()
      local rs = {}
      for i = 1, 3 do rs[i] = pool:apply_async(function() ev:wait(30); return mp.getpid() end) end
      ev:set()
      local pids = {}
      for i = 1, 3 do pids[rs[i]:get(30)] = true end
      local n = 0
      for _ in pairs(pids) do n = n + 1 end
      assert.are.equal(3, n)
    end)

    it("moves work queued behind a long task to a worker that is free", function()
      local pool <close> = mp.Pool(2)
      local ev = mp.Event()
      local long = pool:apply_async(function() ev:wait(60); return "long" end)
      local shorts = {}
      for i = 1, 4 do shorts[i] = pool:apply_async(square, { i }) end
      -- one of these was queued behind the long task; it must not wait for it
      for i = 1, 4 do assert.are.equal(i * i, shorts[i]:get(20)) end
      assert.is_false(long:ready())
      ev:set()
      assert.are.equal("long", long:get(30))
    end)

    it("runs closures with upvalues as tasks", function()
      local pool <close> = mp.Pool(2)
      local base = { offset = 100 }
      local function add(x) return x + base.offset end
      assert.are.same({ 101, 102 }, pool:map(function(x) return add(x) end, { 1, 2 }))
    end)

    it("imap yields in order, imap_unordered everything once", function()
      local pool <close> = mp.Pool(2)
      local got = {}
      for v in pool:imap(square, { 1, 2, 3, 4, 5 }, 2) do got[#got + 1] = v end
      assert.are.same({ 1, 4, 9, 16, 25 }, got)
      local i = 0
      local function numbers() i = i + 1; if i <= 200 then return i end end
      local seen, sum = {}, 0
      for v in pool:imap_unordered(function(x) return x * 2 end, numbers, 3) do
        assert.is_nil(seen[v])
        seen[v] = true
        sum = sum + v
      end
      assert.are.equal(200 * 201, sum)
    end)

    it("imap over an iterator of 10 million items keeps the parent's memory bounded", function()
      local pool <close> = mp.Pool(2)
      local i, N = 0, 10000000
      local function numbers() i = i + 1; if i <= N then return i end end
      local count, peak = 0, 0
      collectgarbage()
      local base = collectgarbage("count")
      for _ in pool:imap_unordered(function(x) return x & 1 end, numbers, 20000) do
        count = count + 1
        if count % 100000 == 0 then peak = math.max(peak, collectgarbage("count") - base) end
      end
      assert.are.equal(N, count)
      -- a list of 10 million numbers alone would take over 150 MiB
      assert.is_true(peak < 64 * 1024, ("parent memory grew by %d KiB"):format(math.floor(peak)))
    end)
  end)

  describe("AsyncResult", function()
    it("has get, wait, ready and successful", function()
      local pool <close> = mp.Pool(1)
      local ev = mp.Event()
      local r = pool:apply_async(function() ev:wait(30); return "done" end)
      assert.is_false(r:ready())
      assert.is_false(r:wait(0.05))
      assert.are.equal("StateError", errkind(r.successful, r))
      assert.are.equal("Timeout", errkind(r.get, r, 0))
      ev:set()
      assert.are.equal("done", r:get(30))
      assert.is_true(r:ready())
      assert.is_true(r:successful())
      local bad = pool:apply_async(error, { "nope" })
      assert.is_true(bad:wait(30))
      assert.is_false(bad:successful())
    end)

    it("runs callbacks in the parent", function()
      local pool <close> = mp.Pool(2)
      local me = mp.getpid()
      local got, errs = {}, {}
      -- the two callbacks may come in either order: keyed by job
      local r1 = pool:apply_async(function(x) return x, mp.getpid() end, { 5 },
        { callback = function(x, pid) got.apply = { x, pid, mp.getpid() } end })
      local r2 = pool:apply_async(function() error("cb") end, nil,
        { error_callback = function(e) errs[#errs + 1] = { e, mp.getpid() } end })
      local r3 = pool:map_async(square, { 1, 2, 3 }, nil,
        { callback = function(v) got.map = { v, mp.getpid() } end })
      r1:wait(30); r2:wait(30); r3:wait(30)
      assert.are.equal(5, got.apply[1])
      assert.are_not.equal(me, got.apply[2]) -- ran in a worker
      assert.are.equal(me, got.apply[3])     -- called back here
      assert.are.same({ 1, 4, 9 }, got.map[1])
      assert.are.equal(me, got.map[2])
      assert.is_true(mp.iserror(errs[1][1], "RemoteError"))
      assert.are.equal(me, errs[1][2])
    end)
  end)

  describe("workers", function()
    it("runs the initializer in each worker, before its tasks", function()
      local pool <close> = mp.Pool(2, { initializer = function(tag) _G.worker_tag = tag .. mp.getpid() end,
                                        initargs = { "w" } })
      local r = pool:map(function() return _G.worker_tag == "w" .. mp.getpid() end, { 1, 2, 3, 4, 5, 6 }, 1)
      for i = 1, 6 do assert.is_true(r[i]) end
    end)

    it("replaces a worker after maxtasksperchild tasks", function()
      local pool <close> = mp.Pool(1, { maxtasksperchild = 2 })
      local pids = pool:map(function() return mp.getpid() end, { 1, 2, 3, 4, 5, 6 }, 1)
      assert.are.equal(pids[1], pids[2])
      assert.are_not.equal(pids[2], pids[3])
      assert.are.equal(pids[3], pids[4])
      assert.are_not.equal(pids[4], pids[5])
      assert.are_not.equal(pids[1], pids[5])
    end)

    it("replaces a retiring worker without waiting to see it exit", function()
      -- each of 40 lifetimes used to cost up to a second: the exit was only
      -- noticed at the end of the parent's wait slice
      local pool <close> = mp.Pool(1, { maxtasksperchild = 1 })
      local list = {}
      for i = 1, 40 do list[i] = i end
      local pids = pool:map_async(function() return mp.getpid() end, list, 1):get(20)
      local seen = {}
      for i = 1, 40 do
        assert.is_nil(seen[pids[i]])
        seen[pids[i]] = true
      end
    end)

    it("retired workers exit by themselves, so close then join returns", function()
      -- under spawn the worker never saw its maxtasksperchild (its arguments
      -- had a hole where the initializer was) and went on waiting for work
      local pool = mp.Pool(2, { maxtasksperchild = 1 })
      assert.are.same({ 1, 2, 3, 4, 5, 6 }, pool:map(function(x) return x end, { 1, 2, 3, 4, 5, 6 }, 1))
      pool:close()
      assert.is_true(pool:join(15))
      assert.are.same({}, mp.active_children())
    end)

    it("prints its workers, its pending tasks and its state", function()
      local pool = mp.Pool(2)
      assert.are.equal("Pool(workers=2, pending=0, running)", tostring(pool))
      local ev = mp.Event()
      local r = pool:map_async(function() ev:wait(30) end, { 1, 2, 3 }, 1)
      assert.are.equal("Pool(workers=2, pending=3, running)", tostring(pool))
      ev:set()
      r:get(30)
      pool:close()
      assert.are.equal("Pool(workers=2, pending=0, closed)", tostring(pool))
      pool:terminate()
    end)

    it("rejects bad sizes and options", function()
      for _, n in ipairs{ 0, -1, 1.5, "2" } do
        assert.are.equal("ValueError", errkind(mp.Pool, n))
      end
      for _, m in ipairs{ 0, -1, 0.5, "12" } do
        local kind, err = errkind(mp.Pool, 1, { maxtasksperchild = m })
        assert.are.equal("ValueError", kind)
        assert.matches("maxtasksperchild", err.message)
      end
      assert.are.equal("ValueError", errkind(mp.Pool, 1, { initializer = 42 }))
      assert.are.equal("ValueError", errkind(mp.Pool, 1, { colour = "red" }))
      local pool <close> = mp.Pool(1)
      assert.are.equal("ValueError", errkind(pool.map, pool, square, { 1 }, 0))
      assert.are.equal("ValueError", errkind(pool.map, pool, 42, { 1 }))
      assert.are.equal("ValueError", errkind(pool.imap, pool, square, 42))
      assert.are.equal("ValueError", errkind(pool.apply_async, pool, square, { 1 }, { timeout = -1 }))
    end)
  end)

  -- Short tasks travel to a worker several to a message; each stays a task.
  describe("batches of short tasks", function()
    local N = 3000

    local function numbers()
      local list = {}
      for i = 1, N do list[i] = i end
      return list
    end

    -- f(x) counts its runs in `runs`, and does `fault()` once at item `at`.
    local function faulty(runs, once, at, fault)
      return function(x)
        runs:add(1)
        if x == at and once:compare_and_set(0, 1) then fault() end
        return x
      end
    end

    it("sends fewer messages than tasks and keeps every result in place", function()
      local pool <close> = mp.Pool(2)
      local r = pool:map(square, numbers(), 1)
      for i = 1, N do assert(r[i] == i * i, i) end
      assert.is_true(pool._batches_sent < N / 4, ("%d messages for %d tasks"):format(pool._batches_sent, N))
    end)

    it("yields imap results in order across batches", function()
      local pool <close> = mp.Pool(2)
      local i = 0
      local function items() i = i + 1; if i <= N then return i end end
      local want = 1
      for v in pool:imap(square, items) do
        assert(v == want * want, want)
        want = want + 1
      end
      assert.are.equal(N + 1, want)
      assert.is_true(pool._batches_sent < N / 4)
    end)

    it("counts each task of a batch towards maxtasksperchild", function()
      local pool <close> = mp.Pool(1, { maxtasksperchild = 100 })
      local pids = pool:map(function() return mp.getpid() end, numbers(), 1)
      for life = 0, N / 100 - 1 do
        for i = life * 100 + 2, life * 100 + 100 do assert.are.equal(pids[life * 100 + 1], pids[i]) end
        if life > 0 then assert.are_not.equal(pids[life * 100], pids[life * 100 + 1]) end
      end
      assert.is_true(pool._batches_sent < N / 4)
    end)

    it("loses only the task whose worker died; the rest of its batch runs once", function()
      local pool <close> = mp.Pool(2)
      local runs, once = mp.Value("i", 0), mp.Value("i", 0)
      local r = pool:map_async(faulty(runs, once, 2500, function() os.exit(3) end), numbers(), 1)
      local ok, err = pcall(r.get, r, 60)
      assert.is_false(ok)
      assert.is_true(mp.iserror(err, "WorkerLost"), tostring(err))
      assert.matches("exit status 3", err.message)
      assert.are.equal(N, runs.value) -- none run twice, none skipped
      assert.is_true(pool._batches_sent < N / 4)
    end)

    it("stops the task past its time limit; the rest of its batch runs once", function()
      local pool <close> = mp.Pool(2)
      local runs, once = mp.Value("i", 0), mp.Value("i", 0)
      local r = pool:map_async(faulty(runs, once, 2500, function() mp.sleep(60) end), numbers(), 1,
        { timeout = 0.5 })
      local ok, err = pcall(r.get, r, 60)
      assert.is_false(ok)
      assert.is_true(mp.iserror(err, "Timeout"), tostring(err))
      assert.are.equal(N, runs.value)
      assert.is_true(pool._batches_sent < N / 4)
    end)

    it("fails only the item that cannot be encoded, at its position", function()
      local pool <close> = mp.Pool(2)
      local list = numbers()
      list[2500] = { co = coroutine.create(print) }
      local kind, err = errkind(pool.map, pool, square, list, 1)
      assert.are.equal("EncodeError", kind)
      assert.matches("args%[2500%]%.co", err.message)
      assert.is_true(pool._batches_sent < N / 4)
      assert.are.equal(4, pool:apply(square, 2))
    end)

    it("fails only the item that cannot be decoded in the worker", function()
      local pool <close> = mp.Pool(2)
      pool:map(square, { 1, 2, 3, 4 }, 1) -- the workers exist before the module below
      local runs = mp.Value("i", 0)
      local list = numbers()
      -- a table with a metatable, found in package.loaded, travels by name
      package.loaded["corral_spec_batch_only"] = setmetatable({}, {})
      list[2500] = package.loaded["corral_spec_batch_only"]
      local r = pool:map_async(function(x) runs:add(1); return x end, list, 1)
      local ok, err = pcall(r.get, r, 60)
      package.loaded["corral_spec_batch_only"] = nil
      assert.is_false(ok)
      assert.is_true(mp.iserror(err, "DecodeError"), tostring(err))
      assert.matches("corral_spec_batch_only", err.message)
      assert.are.equal(N - 1, runs.value)
      assert.is_true(pool._batches_sent < N / 4)
    end)
  end)

  describe("faults", function()
    it("raises EncodeError in the caller for an argument that cannot travel, and goes on", function()
      local pool <close> = mp.Pool(1)
      local co = coroutine.create(function() end)
      local kind, err = errkind(pool.apply_async, pool, square, { co })
      assert.are.equal("EncodeError", kind)
      assert.matches("args%[1%]", err.message)
      kind, err = errkind(pool.map, pool, square, { 1, 2, { cb = co } })
      assert.are.equal("EncodeError", kind)
      assert.matches("args%[3%]%.cb", err.message)
      assert.are.equal(4, pool:apply(square, 2))
    end)

    it("fails a task that cannot be decoded in the worker, and goes on", function()
      local pool <close> = mp.Pool(1)
      pool:apply(square, 1) -- the worker exists before the module below
      package.loaded["corral_spec_only_here"] = { f = function() return 1 end }
      local f = package.loaded["corral_spec_only_here"].f -- travels by name
      local kind, err = errkind(pool.apply, pool, f)
      package.loaded["corral_spec_only_here"] = nil
      assert.are.equal("DecodeError", kind)
      assert.matches("corral_spec_only_here", err.message)
      assert.are.equal(9, pool:apply(square, 3))
    end)

    it("carries a task's error as a RemoteError with message and traceback", function()
      local pool <close> = mp.Pool(2)
      local kind, err = errkind(pool.apply, pool, function() error("bad thing") end)
      assert.are.equal("RemoteError", kind)
      assert.matches("bad thing", err.message)
      assert.matches("stack traceback", err.traceback)
      assert.is_number(err.pid)
      kind, err = errkind(pool.map, pool, function(x) if x == 7 then error("seven") end return x end,
        { 1, 2, 3, 4, 5, 6, 7, 8 }, 3)
      assert.are.equal("RemoteError", kind)
      assert.matches("seven", err.message)
      assert.are.same({ 2 }, pool:map(function(x) return x + 1 end, { 1 }))
    end)

    it("shows a RemoteError as the worker saw it: its message, pid, item and traceback", function()
      local pool <close> = mp.Pool(2)
      local function seven(x) if x == 7 then error("seven") end return x end
      local kind, err = errkind(pool.map, pool, seven, { 1, 2, 3, 4, 5, 6, 7, 8 }, 3)
      assert.are.equal("RemoteError", kind)
      assert.are.equal(7, err.index)
      assert.are.equal("LuaError", err.remote_kind)
      assert.matches("^[^\n]*pool_spec%.lua:%d+: RemoteError: [^\n]*pool_spec%.lua:%d+: seven %(in process "
        .. err.pid .. ", item 7%)\nstack traceback:\n", tostring(err))
      assert.not_matches("corral/", err.traceback) -- the worker's own frames are cut
      assert.matches("pool_spec%.lua:%d+:", err.traceback)
      local ok
      ok, err = pcall(function() for _ in pool:imap(seven, { 5, 6, 7 }) do end end)
      assert.is_false(ok)
      assert.are.equal(3, err.index)
      kind, err = errkind(pool.apply, pool, function() return mp.Queue(-1) end)
      assert.are.equal("ValueError", err.remote_kind)
      assert.is_nil(err.index)
      assert.matches("RemoteError: .*ValueError.*%(in process %d+%)\nstack traceback:", tostring(err))
    end)

    it("reports an uncaught RemoteError with the worker's traceback, not corral's wait", function()
      local script = H.script([[
        local mp = require "corral"
        local pool = mp.Pool(1)
        local function check(x)
          if x == 3 then error("three is bad") end
          return x
        end
        pool:map(check, { 1, 2, 3, 4 }, 1)
      ]])
      local _, err, code = H.run({ script }, nil, { CORRAL_START_METHOD = H.method })
      assert.are.equal(1, code)
      local s = script:gsub("%p", "%%%0")
      assert.matches("^corral: " .. s .. ":7: RemoteError: " .. s .. ":4: three is bad %(in process %d+, item 3%)\n"
        .. "stack traceback:\n\t%[C%]: in function 'error'\n\t" .. s .. ":4: in function <" .. s .. ":3>\n$", err)
    end)

    it("raises in imap at the failing position after the earlier results", function()
      local pool <close> = mp.Pool(2)
      local got = {}
      local ok, err = pcall(function()
        for v in pool:imap(function(x) if x == 5 then error("five") end return x end,
                           { 1, 2, 3, 4, 5, 6, 7 }, 2) do
          got[#got + 1] = v
        end
      end)
      assert.is_false(ok)
      assert.are.same({ 1, 2, 3, 4 }, got)
      assert.is_true(mp.iserror(err, "RemoteError"))
      assert.matches("five", err.message)
    end)

    it("raises the input iterator's error at its position", function()
      local pool <close> = mp.Pool(2)
      local i = 0
      local function items() i = i + 1; if i == 4 then error("source broke") end return i end
      local got = {}
      local ok, err = pcall(function()
        for v in pool:imap(square, items) do got[#got + 1] = v end
      end)
      assert.is_false(ok)
      assert.are.same({ 1, 4, 9 }, got)
      assert.matches("source broke", tostring(err))
      assert.are.equal(16, pool:apply(square, 4))
    end)

    it("raises the input iterator's error as the iterator raised it, not as a RemoteError", function()
      local pool <close> = mp.Pool(2)
      local function broken(what)
        local i = 0
        return function() i = i + 1; if i == 3 then error(what) end return i end
      end
      local ok, err = pcall(function() for _ in pool:imap(square, broken("source broke")) do end end)
      assert.is_false(ok)
      assert.matches("^[^:]*pool_spec%.lua:%d+: source broke$", err) -- the iterator's own string
      local mine = { code = 7 }
      ok, err = pcall(function() for _ in pool:imap_unordered(square, broken(mine)) do end end)
      assert.is_false(ok)
      assert.are.equal(mine, err)
    end)

    it("stops the pool with the error when the initializer raises, instead of starting workers forever", function()
      local pool <close> = mp.Pool(2, { initializer = function() error("no database") end })
      local r = pool:map_async(square, { 1, 2, 3 }, 1)
      local ok, err = pcall(r.get, r, 20)
      assert.is_false(ok)
      assert.is_true(mp.iserror(err, "RemoteError"), tostring(err))
      assert.matches("initializer raised: .*no database", err.message)
      assert.matches("stack traceback", err.traceback)
      local kind, serr = errkind(pool.apply, pool, square, 2)
      assert.are.equal("StateError", kind)
      assert.matches("initializer raised", serr.message)
      assert.are.same({}, mp.active_children())
    end)

    local init_deaths = {
      { "os.exit", function() os.exit(3) end, "exited in its initializer %(exit status 3%)" },
      { "SIGKILL", function() os.execute("kill -KILL " .. mp.getpid()); mp.sleep(30) end,
        "was killed by signal 9 in its initializer" },
    }
    for _, d in ipairs(init_deaths) do
      it("stops the pool with WorkerLost when a worker dies in its initializer (" .. d[1] .. ")", function()
        local pool <close> = mp.Pool(2, { initializer = d[2] })
        local r = pool:map_async(square, { 1, 2, 3 }, 1)
        local ok, err = pcall(r.get, r, 10)
        assert.is_false(ok)
        assert.is_true(mp.iserror(err, "WorkerLost"), tostring(err))
        assert.matches("^the pool stopped: worker pid %d+ " .. d[3], err.message)
        assert.is_number(err.pid)
        local kind, serr = errkind(pool.apply, pool, square, 2)
        assert.are.equal("StateError", kind)
        assert.matches("in its initializer", serr.message)
        assert.are.same({}, mp.active_children())
      end)
    end

    it("fails only the task whose result cannot be encoded", function()
      local pool <close> = mp.Pool(1)
      local kind, err = errkind(pool.apply, pool, function() return coroutine.create(print) end)
      assert.are.equal("EncodeError", kind)
      assert.matches("coroutine", err.message)
      assert.are.equal(25, pool:apply(square, 5))
    end)

    local deaths = {
      { "os.exit", function() os.exit(3) end, "exit status 3" },
      { "SIGKILL", function() os.execute("kill -KILL " .. mp.getpid()); mp.sleep(30) end, "signal 9" },
      { "SIGSEGV", function() os.execute("kill -SEGV " .. mp.getpid()); mp.sleep(30) end, "signal 11" },
    }
    for _, d in ipairs(deaths) do
      it("fails a task whose worker dies (" .. d[1] .. ") with WorkerLost and replaces the worker", function()
        local pool <close> = mp.Pool(2)
        local r = pool:apply_async(d[2])
        local others = pool:map_async(square, { 1, 2, 3, 4, 5, 6, 7, 8 }, 1)
        local ok, err = pcall(r.get, r, 30)
        assert.is_false(ok)
        assert.is_true(mp.iserror(err, "WorkerLost"), tostring(err))
        assert.matches("worker pid %d+", err.message)
        assert.matches(d[3], err.message)
        assert.are.same({ 1, 4, 9, 16, 25, 36, 49, 64 }, others:get(30))
        assert.are.equal(36, pool:apply(square, 6))
      end)
    end

    it("stops a task that runs past its time limit with Timeout; the others go on", function()
      local pool <close> = mp.Pool(2)
      local slow = pool:apply_async(function() mp.sleep(60) end, nil, { timeout = 0.2 })
      local fine = pool:apply_async(square, { 3 }, { timeout = 30 })
      local ok, err = pcall(slow.get, slow, 30)
      assert.is_false(ok)
      assert.is_true(mp.iserror(err, "Timeout"), tostring(err))
      assert.are.equal(9, fine:get(30))
      local kind = errkind(pool.map, pool, function(x) if x == 2 then mp.sleep(60) end return x end,
        { 1, 2, 3 }, 1, { timeout = 0.2 })
      assert.are.equal("Timeout", kind)
      assert.are.same({ 1, 2, 3 }, pool:map(function(x) return x end, { 1, 2, 3 }))
    end)

    it("looks at a timed task waiting behind another by the time it could run out", function()
      local pool <close> = mp.Pool(1)
      local gate = mp.Event()
      local long = pool:apply_async(function() gate:wait(60) end)
      local timed = pool:apply_async(function() mp.sleep(60) end, nil, { timeout = 0.5 })
      -- both wait in the one worker: the timed task may start at any moment,
      -- and its start sends nothing that would wake the parent
      assert.is_true(pool:_check_deadlines() <= mp.time() + 0.5)
      gate:set()
      long:get(30)
      local ok, err = pcall(timed.get, timed, 30)
      assert.is_false(ok)
      assert.is_true(mp.iserror(err, "Timeout"), tostring(err))
      assert.matches("time limit of 0.5s", err.message)
      assert.are.equal(9, pool:apply(square, 3))
    end)
  end)

  describe("closing", function()
    it("close then join waits for the queued tasks", function()
      local pool = mp.Pool(2)
      local r = pool:map_async(square, { 1, 2, 3 }, 1)
      pool:close()
      assert.are.equal("StateError", errkind(pool.apply, pool, square, 1))
      assert.is_true(pool:join(30))
      assert.are.same({ 1, 4, 9 }, r:get(0))
      local fresh = mp.Pool(1)
      assert.are.equal("StateError", errkind(fresh.join, fresh))
      fresh:terminate()
    end)

    it("terminate returns promptly with 10000 queued tasks", function()
      local pool = mp.Pool(2)
      local list = {}
      for i = 1, 10000 do list[i] = i end
      local r = pool:map_async(function() mp.sleep(10) end, list, 1)
      pool:terminate()
      assert.is_true(r:ready())
      assert.are.equal("Closed", errkind(r.get, r, 0))
      assert.are.equal("StateError", errkind(pool.apply, pool, square, 1))
      assert.are.same({}, mp.active_children())
    end)

    it("terminates at the end of a <close> scope, even with tasks running", function()
      local pids
      do
        local pool <close> = mp.Pool(2)
        pool:apply_async(function() mp.sleep(60) end)
        pids = {}
        for _, p in ipairs(mp.active_children()) do pids[#pids + 1] = p.pid end
        assert.are.equal(2, #pids)
      end
      assert.are.same({}, mp.active_children())
    end)

    it("exits promptly on Ctrl-C during map and leaves no process behind", function()
      local script = H.script([[
        local mp = require "corral"
        local pool = mp.Pool(2)
        print("ready " .. mp.getpid()); io.stdout:flush()
        pool:map(function() mp.sleep(60) end, { 1, 2, 3, 4 }, 1)
        print("not reached")
      ]])
      local cmd = ("exec 3< <(CORRAL_START_METHOD=%s setsid %s %s 2>&1); read -u 3 tag pgid; "
        .. "kill -INT -- -$pgid; cat <&3; ps -o pid= -g $pgid | wc -l"):format(H.method, H.exe, script)
      local f = io.popen("env -u LD_PRELOAD bash -c " .. H.shell_quote(cmd))
      local out = f:read("a")
      f:close()
      assert.matches("interrupted", out)
      assert.not_matches("not reached", out)
      assert.matches("\n%s*0%s*$", out) -- nothing left in its process group
    end)
  end)
end)
