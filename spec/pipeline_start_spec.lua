-- Pipelines started in the background (p:start{on_done=, on_error=}):
-- served from every corral wait while the caller only sleeps, their
-- callbacks, get/wait/ready, the live stats (also from inside an each
-- sink), a worker killed meanwhile, what a collected pipeline or an
-- exiting process leaves (nothing), and bad options. Runs under both
-- start methods.
local H = require "spec.helper"
local mp = H.mp

local LIMIT = 20 -- seconds: far more than any of these takes when it works

local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

local function errof(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return err
end

-- A stage function slow enough that a run lasts a while: items travel
-- one a chunk, and the live stats see them one by one.
local function slow(x)
  mp.sleep(0.01)
  return x * 2
end

local function doubled(n)
  local t = {}
  for i = 1, n do t[i] = 2 * i end
  return t
end

-- Sum of items_done over the workers of stats.
local function done_sum(st)
  local n = 0
  for _, w in ipairs(st.workers) do n = n + w.items_done end
  return n
end

describe("pipeline:start (" .. H.method .. ")", function()
  after_each(function()
    collectgarbage()
    collectgarbage()
    H.cleanup()
    H.assert_no_children()
  end)

  describe("in the background", function()
    it("returns at once; on_done gets run()'s results and stats while the caller only sleeps", function()
      local got, gst
      local p = mp.pipeline(range(40)):map(slow, { workers = 2 }):filter(function(x) return x % 4 == 0 end)
        :start{ on_done = function(r, st) got, gst = r, st end }
      assert.is_nil(got) -- nothing ran yet: callbacks come from waits
      -- H.wait_until only sleeps and looks at `got`: nothing else serves the pipeline
      assert.is_truthy(H.wait_until(function() return got end, LIMIT))
      local want = {}
      for i = 1, 20 do want[i] = 4 * i end
      assert.are.same(want, got)
      assert.are.equal(40, gst.items)
      assert.are.equal("done", gst.state)
      assert.are.same({ 40, 40, 40, 20 }, { gst.stages[1].items_in, gst.stages[1].items_out,
                                           gst.stages[2].items_in, gst.stages[2].items_out })
      assert.is_true(p:ready())
      local r, st = p:get(0)
      assert.are.equal(got, r)
      assert.are.equal(gst, st)
      assert.are.equal(gst, p:stats())
    end)

    it("is served from q:get: the item on_done puts is what the get returns", function()
      local q = mp.Queue()
      mp.pipeline(range(10)):map(slow, { workers = 2 }):start{ on_done = function(r) q:put(#r) end }
      assert.are.equal(10, q:get(LIMIT))
    end)

    it("gives a reduce pipeline's accumulator to on_done, and runs an each sink in the parent", function()
      local acc
      local p1 = mp.pipeline(range(100)):reduce(function(a, x) return a + x end, 0, { workers = 2 })
        :start{ on_done = function(r) acc = r end }
      local seen, sunk = {}, nil
      local p2 = mp.pipeline(range(30)):map(slow, { workers = 2 }):each(function(v) seen[#seen + 1] = v end)
        :start{ on_done = function(r) sunk = r end }
      assert.is_truthy(H.wait_until(function() return acc and sunk end, LIMIT))
      assert.are.equal(5050, acc)
      assert.are.same({}, sunk)
      assert.are.same(doubled(30), seen)
      assert.are.equal(5050, (p1:get()))
      assert.is_true(p2:wait(0))
    end)

    it("on_error gets the first error with stage and index, and the stats; get raises it", function()
      local err, est, done
      local p = mp.pipeline(range(50)):map(function(x)
        if x == 23 then error("bad item") end
        return x
      end, { workers = 2, name = "parse" }):start{
        on_done = function() done = true end,
        on_error = function(e, st) err, est = e, st end,
      }
      assert.is_truthy(H.wait_until(function() return err end, LIMIT))
      assert.is_nil(done)
      assert.is_true(mp.iserror(err, "RemoteError"), tostring(err))
      assert.are.same({ "parse", 23 }, { err.stage, err.index })
      assert.matches("bad item", err.message)
      assert.are.equal("failed", est.state)
      assert.are.equal(err, errof(p.get, p))
    end)

    it("get(timeout) raises Timeout and wait(timeout) returns false before the end, and it goes on", function()
      local gate = mp.Event()
      local p = mp.pipeline(range(4)):map(function(x) gate:wait(60) return x end):start()
      assert.is_false(p:wait(0.05))
      local e = errof(p.get, p, 0.05)
      assert.is_true(mp.iserror(e, "Timeout"), tostring(e))
      assert.is_false(p:ready())
      gate:set()
      assert.are.same({ 1, 2, 3, 4 }, (p:get(LIMIT)))
    end)

    it("wait() drives it to the end and runs on_done first", function()
      local order = {}
      local p = mp.pipeline(range(20)):map(slow, { workers = 2 })
        :start{ on_done = function() order[#order + 1] = "on_done" end }
      assert.is_true(p:wait(LIMIT))
      order[#order + 1] = "wait"
      assert.are.same({ "on_done", "wait" }, order)
      assert.are.same(doubled(20), (p:get()))
    end)

    it("Ctrl-C in get raises Interrupted and leaves it running: a later get has the results", function()
      local script = H.script([[
        local mp = require "corral"
        local gate = mp.Event()
        print("pid " .. mp.getpid()); io.stdout:flush()
        local p = mp.pipeline({ 1, 2, 3 }):map(function(x)
          io.stdout:write("started\n"); io.stdout:flush()
          gate:wait(60)
          return x
        end, { workers = 3 }):start()
        local ok, err = pcall(p.get, p) -- it feeds the items: they start while it waits
        -- Interrupted when SIGINT came during a corral wait, lua5.4's own
        -- "interrupted!" when it came between two (iserror takes both):
        -- either leaves it running
        print(ok, mp.iserror(err, "Interrupted"))
        gate:set()
        print(table.concat(p:get(10), " "), p:stats().state)
      ]])
      local out = H.interrupted(script, 3)
      assert.are.equal("false\ttrue\n1 2 3\tdone\n", out)
    end)

    it("a worker SIGKILLed during a background run gives the same WorkerLost accounting as run()", function()
      local function decl()
        return mp.pipeline(range(300), { on_error = "collect" })
          :map(function(x)
            if x == 77 then os.execute("kill -9 " .. mp.getpid()) end
            return x
          end, { workers = 2 })
          :map(function(x) return x end, { workers = 2 })
      end
      local r1, st1 = decl():run()
      local r2, st2
      decl():start{ on_done = function(r, st) r2, st2 = r, st end }
      assert.is_truthy(H.wait_until(function() return r2 end, LIMIT))
      assert.are.same(r1, r2)
      assert.are.equal(299, #r2)
      for _, st in ipairs{ st1, st2 } do
        assert.are.equal(1, #st.errors)
        local e = st.errors[1]
        assert.is_true(mp.iserror(e, "WorkerLost"), tostring(e))
        assert.are.same({ "map", 77, -9 }, { e.stage, e.index, e.exitcode })
        assert.are.same({ 1, 0 }, { st.stages[1].lost, st.stages[2].lost })
        assert.are.equal(299, st.stages[1].items_out)
        assert.is_true(st.replaced >= 1) -- the item kills its worker on each run it gets
      end
      assert.are.same({ st1.replaced, st1.stages[1].items_in, st1.stages[2].items_in },
                      { st2.replaced, st2.stages[1].items_in, st2.stages[2].items_in })
    end)

    it("a worker killed from outside loses the item it was on (WorkerLost, its pid) and nothing else", function()
      local got, gst
      local p = mp.pipeline(range(60), { on_error = "collect" }):map(function(x) mp.sleep(0.02) return x end,
        { workers = 2 }):start{ on_done = function(r, st) got, gst = r, st end }
      local victim = H.wait_until(function()
        local st = p:stats()
        for _, w in ipairs(st.workers) do if w.items_done >= 3 and w.item_age then return w.pid end end
      end, LIMIT)
      assert.is_truthy(victim)
      os.execute("kill -9 " .. victim)
      assert.is_truthy(H.wait_until(function() return got end, LIMIT))
      assert.are.equal(59, #got)
      assert.are.equal(1, #gst.errors)
      local e = gst.errors[1]
      assert.is_true(mp.iserror(e, "WorkerLost"), tostring(e))
      assert.are.same({ victim, "map", -9 }, { e.pid, e.stage, e.exitcode })
      local seen = {}
      for _, x in ipairs(got) do
        assert.is_nil(seen[x], "twice: " .. x)
        seen[x] = true
      end
      assert.is_nil(seen[e.index])
      assert.are.equal(1, gst.replaced)
    end)
  end)

  describe("stats()", function()
    it("is a live view while it runs: per worker pid, items_done growing, busy, item_age, alive", function()
      local done
      local p = mp.pipeline(range(80)):map(slow, { workers = 2, name = "work" })
        :start{ on_done = function() done = true end }
      local first = H.wait_until(function()
        local st = p:stats()
        return st.state == "running" and done_sum(st) >= 4 and st
      end, LIMIT)
      assert.is_truthy(first)
      local later = H.wait_until(function()
        local st = p:stats()
        return done_sum(st) >= done_sum(first) + 10 and st
      end, LIMIT)
      assert.is_truthy(later)
      assert.are.equal(2, #first.workers)
      local kids = {}
      for _, pid in ipairs(H.child_pids()) do kids[pid] = true end
      for k, w in ipairs(first.workers) do
        assert.are.same({ "work", k, true }, { w.stage, w.k, w.alive })
        assert.is_truthy(kids[w.pid], "not a child: " .. tostring(w.pid))
        assert.is_true(w.busy >= 0 and w.busy <= 1, tostring(w.busy))
        assert.is_true(w.item_age == nil or (w.item_age >= 0 and w.item_age < LIMIT))
        assert.are.equal(w.pid, later.workers[k].pid)
      end
      assert.is_true(first.stages[1].items_in <= later.stages[1].items_in)
      assert.is_true(first.elapsed < later.elapsed)
      assert.is_truthy(H.wait_until(function() return done end, LIMIT))
      local final = p:stats()
      assert.are.equal("done", final.state)
      assert.are.equal(80, done_sum(final))
      for _, w in ipairs(final.workers) do assert.is_false(w.alive) end
    end)

    it("is a live view from inside an each sink of run()", function()
      local p = mp.pipeline(range(40)):map(slow, { workers = 2 })
      local counts, states = {}, {}
      p:each(function()
        local st = p:stats()
        counts[#counts + 1] = st.stages[1].items_out
        states[st.state] = true
        assert.are.equal(2, #st.workers)
        -- a worker ends once the source is exhausted and its input drained
        if st.stages[1].items_out <= 30 then
          for _, w in ipairs(st.workers) do assert.is_true(w.alive) end
        end
      end)
      assert.is_nil(p:stats())
      local _, st = p:run()
      assert.are.equal(40, #counts)
      assert.is_true(counts[1] >= 1)
      for i = 2, 40 do assert.is_true(counts[i] >= counts[i - 1]) end
      assert.is_true(counts[1] < 40) -- it saw the pipeline before its end
      assert.is_true(states.running)
      assert.are.equal("done", st.state)
      assert.are.equal("done", p:stats().state)
    end)
  end)

  describe("what it leaves", function()
    it("a started pipeline that is collected stops: its workers are killed and reaped", function()
      local started = mp.Event()
      do
        local p = mp.pipeline(range(1000)):map(function(x) started:set() mp.sleep(0.05) return x end,
          { workers = 2 }):start()
        assert.is_true(H.wait_until(function() p:ready() return started:is_set() end, LIMIT))
        assert.are.equal(2, #H.child_pids())
      end
      collectgarbage()
      collectgarbage()
      H.assert_no_children()
    end)

    it("an exiting process leaves no worker of a running pipeline behind", function()
      local path = H.script([[
        local mp = require "corral"
        local p = mp.pipeline({ 1, 2, 3, 4, 5, 6, 7, 8 }):map(function(x) mp.sleep(30) return x end,
          { workers = 2 }):start()
        local pids
        while not pids do
          mp.sleep(0.01)
          local st = p:stats()
          if st.workers[1].item_age and st.workers[2].item_age then
            pids = st.workers[1].pid .. " " .. st.workers[2].pid
          end
        end
        print(pids)
      ]])
      local out, err, code = H.run({ path }, nil, { CORRAL_START_METHOD = H.method })
      assert.are.equal(0, code, err)
      local pids = {}
      for pid in out:gmatch("%d+") do pids[#pids + 1] = pid end
      assert.are.equal(2, #pids, out)
      for _, pid in ipairs(pids) do
        assert.is_true(H.wait_until(function() return H.ps("pid=", pid) == "" end, 5), "left: " .. pid)
      end
    end)

    it("an error raised by on_done goes to the callback error handler; the waits go on", function()
      local path = H.script([[
        local mp = require "corral"
        local q = mp.Queue()
        mp.pipeline({ 1, 2 }):map(function(x) return x end):start{ on_done = function(r)
          q:put(#r)
          error("done failed")
        end }
        mp.pipeline({ 1, 2, 3 }):map(function(x) return x end):start{ on_done = function(r) q:put(#r) end }
        print(q:get(10) + q:get(10))
        local p = mp.pipeline({ 4 }):map(function(x) return x end)
          :start{ on_error = function() end, on_done = function() error("in get") end }
        print(p:get(10)[1])
      ]])
      local out, err, code = H.run({ path }, nil, { CORRAL_START_METHOD = H.method })
      assert.are.equal(0, code, err)
      assert.are.equal("5\n4\n", out)
      assert.matches("corral: error in a callback: .*done failed", err)
      assert.matches("corral: error in a callback: .*in get", err)
      assert.matches("stack traceback:", err)
    end)
  end)

  describe("misuse", function()
    it("bad options are a ValueError naming the key", function()
      local p = mp.pipeline(range(3)):map(slow)
      local e = errof(p.start, p, { on_dnoe = print })
      assert.is_true(mp.iserror(e, "ValueError"), tostring(e))
      assert.matches("start: unknown option 'on_dnoe'", e.message)
      e = errof(p.start, p, { on_done = 3 })
      assert.is_true(mp.iserror(e, "ValueError"), tostring(e))
      assert.matches("on_done must be a function", e.message)
      e = errof(p.start, p, { on_error = "x" })
      assert.matches("on_error must be a function", e.message)
      e = errof(p.start, p, 7)
      assert.matches("options must be a table", e.message)
      -- nothing started: it still runs
      assert.are.same({ 2, 4, 6 }, (p:run()))
    end)

    it("starting twice, by any of run, iter and start, or adding a stage after, is a StateError", function()
      local p = mp.pipeline(range(3)):map(slow):start()
      for _, call in ipairs{
        function() p:start() end, function() p:run() end, function() p:iter() end,
        function() p:map(slow) end, function() p:each(print) end,
      } do
        local e = errof(call)
        assert.is_true(mp.iserror(e, "StateError"), tostring(e))
        assert.matches("started already %(by start%)", e.message)
      end
      assert.are.same({ 2, 4, 6 }, (p:get(LIMIT)))
      local q = mp.pipeline(range(3))
      q:run()
      local e = errof(q.start, q)
      assert.matches("start: the pipeline was started already %(by run%)", e.message)
    end)

    it("get, wait and ready on a pipeline not started with start() are a StateError", function()
      local p = mp.pipeline(range(3))
      for _, name in ipairs{ "get", "wait", "ready" } do
        local e = errof(p[name], p)
        assert.is_true(mp.iserror(e, "StateError"), tostring(e))
        assert.matches(name .. ": the pipeline was not started with start%(%)", e.message)
      end
      local s = mp.pipeline(range(3)):start()
      local e = errof(s.get, s, -1)
      assert.is_true(mp.iserror(e, "ValueError"), tostring(e))
      assert.is_true(s:wait(LIMIT))
    end)
  end)
end)
