-- Pipelines: order, end of stream, every kind of source and stage, stats,
-- errors (raise and collect), worker deaths, retries, time limits, leaving
-- iter() early, bounded memory, Ctrl-C and bad input. Runs under both
-- start methods.
local H = require "spec.helper"
local mp = H.mp

local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

-- Burns some CPU for item x, more for some items than for others, so that
-- items finish out of order across workers.
local function uneven(x)
  local n = (x % 7 == 0) and 20000 or 10
  local s = 0
  for i = 1, n do s = s + i % 3 end
  return x + s * 0
end

local function errof(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return err
end

local function rss_kib()
  local f = io.open("/proc/self/status")
  local kib = tonumber(f:read("a"):match("VmRSS:%s*(%d+)"))
  f:close()
  return kib
end

describe("pipeline (" .. H.method .. ")", function()
  after_each(function()
    collectgarbage()
    H.cleanup()
    H.assert_no_children()
  end)

  describe("order and end of stream", function()
    it("keeps source order across 2-worker stages", function()
      local r = mp.pipeline(range(3000))
        :map(uneven, { workers = 2 })
        :map(function(x) return x * 2 end, { workers = 2 })
        :run()
      assert.are.equal(3000, #r)
      for i = 1, 3000 do
        if r[i] ~= 2 * i then error(("r[%d] = %s"):format(i, tostring(r[i]))) end
      end
    end)

    it("with ordered = false gives every item once, in any order", function()
      local r = mp.pipeline(range(2000)):map(uneven, { workers = 2, ordered = false }):run()
      assert.are.equal(2000, #r)
      table.sort(r)
      for i = 1, 2000 do assert(r[i] == i, "item " .. i) end
    end)

    it("returns at once for an empty source, with no stage or many", function()
      assert.are.same({}, (mp.pipeline({}):run()))
      local r, stats = mp.pipeline({}):map(uneven, { workers = 2 }):filter(uneven):batch(3):run()
      assert.are.same({}, r)
      assert.are.equal(0, stats.stages[1].items_in)
      assert.are.equal(0, (mp.pipeline(function() return nil end):map(uneven):run())[1] or 0)
    end)

    it("takes an iterator source of 200000 items", function()
      local i = 0
      local function src()
        i = i + 1
        if i <= 200000 then return i end
      end
      local sum = 0
      local r = mp.pipeline(src)
        :map(function(x) return x + 1 end, { workers = 2 })
        :map(function(x) return x * 2 end, { workers = 2 })
        :run()
      assert.are.equal(200000, #r)
      for k = 1, #r do sum = sum + r[k] end
      assert.are.equal(2 * (200000 * 200001 // 2 + 200000), sum)
      assert.are.equal(4, r[1])
      assert.are.equal(400002, r[200000])
    end)

    it("takes a Queue fed by another process, until it is closed and drained", function()
      local q = mp.Queue(16)
      local feeder = H.start(function(qq)
        for k = 1, 500 do qq:put(k) end
        qq:close()
      end, q)
      local r = mp.pipeline(q):map(function(x) return -x end, { workers = 2 }):run()
      H.join_ok(feeder)
      assert.are.equal(500, #r)
      for k = 1, 500 do assert(r[k] == -k, "item " .. k) end
    end)

    it("takes producer processes with produce(fn, {workers = n})", function()
      local src = mp.pipeline.produce(function(emit, k)
        for j = 1, 1000 do emit(k * 100000 + j) end
      end, { workers = 3 })
      local r, stats = mp.pipeline(src):filter(function(x) return x % 2 == 0 end, { workers = 2 }):run()
      assert.are.equal(1500, #r)
      local seen = {}
      for _, v in ipairs(r) do
        assert(not seen[v], "twice: " .. v)
        seen[v] = true
      end
      for k = 1, 3 do
        assert.is_true(seen[k * 100000 + 2])
        assert.is_true(seen[k * 100000 + 1000])
      end
      assert.are.equal(3000, stats.items)
      -- one producer's items keep their order
      local last = 0
      for _, v in ipairs(r) do
        if v // 100000 == 2 then
          assert(v > last, "out of order")
          last = v
        end
      end
    end)
  end)

  describe("stages", function()
    it("flat_map sends each element of the array on; batch groups consecutive items", function()
      local r = mp.pipeline(range(10))
        :flat_map(function(x) if x % 2 == 0 then return { x, x } end end, { workers = 2 })
        :batch(4)
        :run()
      assert.are.same({ { 2, 2, 4, 4 }, { 6, 6, 8, 8 }, { 10, 10 } }, r)
      local r2 = mp.pipeline(range(1000)):batch(100):map(function(b) return #b end, { workers = 2 }):run()
      assert.are.equal(10, #r2)
      for k = 1, 10 do assert.are.equal(100, r2[k]) end
    end)

    it("drops an item for which map returns nil, and filter keeps what pred accepts", function()
      local r = mp.pipeline(range(10))
        :map(function(x) if x ~= 3 then return x end end)
        :filter(function(x) return x > 5 end, { workers = 2 })
        :run()
      assert.are.same({ 6, 7, 8, 9, 10 }, r)
    end)

    it("starts its workers with the start method of opts.context", function()
      local other = H.method == "fork" and "spawn" or "fork"
      local r = mp.pipeline({ 1, 2, 3 }, { context = mp.get_context(other) })
        :map(function(x) return x * 3 end, { workers = 2 })
        :run()
      assert.are.same({ 3, 6, 9 }, r)
    end)

    it("runs closures with upvalues as stage functions", function()
      local offset, names = 1000, { "a", "b", "c" }
      local r = mp.pipeline({ 1, 2, 3 })
        :map(function(x) return names[x] .. (x + offset) end, { workers = 2 })
        :run()
      assert.are.same({ "a1001", "b1002", "c1003" }, r)
    end)

    it("reduce folds in the workers and merges in the parent", function()
      local words = {}
      for i = 1, 3000 do words[i] = ({ "a", "b", "c" })[i % 3 + 1] end
      local counts, stats = mp.pipeline(words)
        :reduce(function(acc, w) acc[w] = (acc[w] or 0) + 1; return acc end, {}, {
          workers = 2,
          merge = function(a, b)
            for k, v in pairs(b) do a[k] = (a[k] or 0) + v end
            return a
          end,
        })
        :run()
      assert.are.same({ a = 1000, b = 1000, c = 1000 }, counts)
      assert.are.equal(3000, stats.stages[1].items_in)
      local sum = mp.pipeline(range(100)):reduce(function(a, x) return a + x end, 0, { workers = 2 }):run()
      assert.are.equal(5050, sum)
      assert.are.equal(0, (mp.pipeline({}):reduce(function(a, x) return a + x end, 0):run()))
    end)

    it("each runs the sink in the parent; run then returns no items", function()
      local got, pids = {}, {}
      local r = mp.pipeline(range(50))
        :map(function(x) return { x, mp.getpid() } end, { workers = 2 })
        :each(function(item)
          got[#got + 1] = item[1]
          pids[item[2]] = true
          assert(mp.getpid() == mp.current_process().pid)
        end)
        :run()
      assert.are.same({}, r)
      assert.are.same(range(50), got)
      assert.is_nil(pids[mp.getpid()])
    end)

    it("counts per stage in stats, and names the bottleneck", function()
      local r, stats = mp.pipeline(range(100), { name = "etl" })
        :map(function(x) return x end, { workers = 2, name = "parse" })
        :filter(function(x) return x % 4 == 0 end)
        :flat_map(function(x) return { x, x, x } end)
        :run()
      assert.are.equal(75, #r)
      assert.are.equal(100, stats.items)
      assert.is_number(stats.elapsed)
      local s1, s2, s3 = stats.stages[1], stats.stages[2], stats.stages[3]
      assert.are.equal("parse", s1.name)
      assert.are.equal(2, s1.workers)
      assert.are.same({ 100, 100 }, { s1.items_in, s1.items_out })
      assert.are.same({ "filter", 100, 25 }, { s2.name, s2.items_in, s2.items_out })
      assert.are.same({ "flat_map", 25, 75 }, { s3.name, s3.items_in, s3.items_out })
      for _, s in ipairs(stats.stages) do
        assert.are.same({ 0, 0, 0 }, { s.errors, s.retries, s.lost })
        assert(s.busy >= 0 and s.wait_in >= 0 and s.wait_out >= 0)
      end
      local text = tostring(stats)
      assert.matches("pipeline 'etl': 100 items", text)
      assert.matches("parse", text)
      assert.matches("<%- bottleneck", text)
    end)
  end)

  describe("errors", function()
    it("raises the first error with stage and index, and leaves nothing running", function()
      local err = errof(function()
        mp.pipeline(range(1000))
          :map(function(x) return x end, { workers = 2 })
          :map(function(x) if x == 321 then error("bad item " .. x) end return x end, { workers = 2, name = "check" })
          :run()
      end)
      assert.is_true(mp.iserror(err, "RemoteError"), tostring(err))
      assert.are.equal("check", err.stage)
      assert.are.equal(321, err.index)
      assert.matches("bad item 321", err.message)
      assert.is_string(err.traceback)
    end)

    it("collects errors with on_error = 'collect' and goes on", function()
      local r, stats = mp.pipeline(range(100), { on_error = "collect" })
        :map(function(x) if x % 10 == 0 then error("ten") end return x end, { workers = 2 })
        :run()
      assert.are.equal(90, #r)
      assert.are.equal(10, #stats.errors)
      local idx = {}
      for _, e in ipairs(stats.errors) do
        assert.is_true(mp.iserror(e, "RemoteError"))
        assert.are.equal("map", e.stage)
        idx[#idx + 1] = e.index
      end
      table.sort(idx)
      assert.are.same({ 10, 20, 30, 40, 50, 60, 70, 80, 90, 100 }, idx)
      assert.are.equal(10, stats.stages[1].errors)
    end)

    it("a worker that kills itself fails that item alone with WorkerLost; the rest come once", function()
      local r, stats = mp.pipeline(range(300), { on_error = "collect" })
        :map(function(x)
          if x == 77 then os.exit(3) end
          return x
        end, { workers = 2 })
        :map(function(x) return x end, { workers = 2 })
        :run()
      assert.are.equal(299, #r)
      for k = 1, 299 do
        local want = k < 77 and k or k + 1
        if r[k] ~= want then error(("r[%d] = %s"):format(k, tostring(r[k]))) end
      end
      assert.are.equal(1, #stats.errors)
      local e = stats.errors[1]
      assert.is_true(mp.iserror(e, "WorkerLost"), tostring(e))
      assert.are.same({ "map", 77, 3 }, { e.stage, e.index, e.exitcode })
      assert.are.equal(1, stats.stages[1].lost)
    end)

    it("raises WorkerLost for a SIGKILLed worker's item with on_error = 'raise'", function()
      local err = errof(function()
        mp.pipeline(range(50)):map(function(x)
          if x == 20 then mp.sleep(0) ; os.execute("kill -9 " .. mp.getpid()) end
          return x
        end, { workers = 2 }):run()
      end)
      assert.is_true(mp.iserror(err, "WorkerLost"), tostring(err))
      assert.are.equal(20, err.index)
      assert.matches("signal 9", err.message)
    end)

    it("loses and doubles nothing when a worker is SIGKILLed from outside, wherever it is", function()
      for round = 1, 3 do
        local pids, killed, got = {}, 0, {}
        mp.pipeline(range(20000))
          :map(function(x) return { x, mp.getpid() } end, { workers = 2 })
          :map(function(p) return p end, { workers = 2 })
          :each(function(p)
            local x, pid = p[1], p[2]
            assert(not got[x], "twice: " .. x)
            got[x] = true
            pids[pid] = true
            if x % (3000 + round * 500) == 0 and killed < 3 then
              killed = killed + 1
              for q in pairs(pids) do os.execute("kill -9 " .. q .. " 2>/dev/null"); pids = {}; break end
            end
          end)
          :run()
        for x = 1, 20000 do assert(got[x], "lost: " .. x) end
      end
    end)

    it("retries an item whose worker died, with retries = n", function()
      -- items slow enough to travel one a chunk: the death is the item's
      local once = mp.RawValue("i", 0)
      local r, stats = mp.pipeline(range(40))
        :map(function(x)
          mp.sleep(0.002)
          if x == 13 and once:compare_and_set(0, 1) then os.exit(1) end
          return x * 10
        end, { workers = 2, retries = 1 })
        :run()
      assert.are.equal(40, #r)
      for k = 1, 40 do assert.are.equal(k * 10, r[k]) end
      assert.are.equal(1, stats.stages[1].retries)
      assert.are.equal(0, stats.stages[1].lost)
      -- and an item that raises is tried again in the worker
      local fails = mp.RawValue("i", 0)
      local r2 = mp.pipeline({ 1, 2, 3 }):map(function(x)
        if x == 2 and fails:add(1) <= 2 then error("flaky") end
        return x
      end, { retries = 2 }):run()
      assert.are.same({ 1, 2, 3 }, r2)
    end)

    it("fails an item past its timeout with Timeout and replaces the worker", function()
      local r, stats = mp.pipeline(range(20), { on_error = "collect" })
        :map(function(x)
          if x == 5 then mp.sleep(60) end
          return x
        end, { workers = 2, timeout = 0.5 })
        :run()
      assert.are.equal(19, #r)
      assert.are.equal(1, #stats.errors)
      local e = stats.errors[1]
      assert.is_true(mp.iserror(e, "Timeout"), tostring(e))
      assert.are.same({ "map", 5 }, { e.stage, e.index })
    end)

    it("a reduce worker that dies loses its item alone; the rest is folded once", function()
      local sum, stats = mp.pipeline(range(2000), { on_error = "collect" })
        :reduce(function(acc, x)
          if x == 1234 then os.exit(5) end
          return acc + x
        end, 0, { workers = 2 })
        :run()
      assert.are.equal(2000 * 2001 // 2 - 1234, sum)
      assert.are.equal(1, #stats.errors)
      assert.are.same({ "WorkerLost", "reduce", 1234 }, { stats.errors[1].kind, stats.errors[1].stage,
                                                         stats.errors[1].index })
    end)

    it("a reduce worker's replacement that dies too loses nothing of what it took over", function()
      -- items slow enough to travel one a chunk: the first worker dies with
      -- 49 items folded and not yet handed over; its replacement hands over
      -- its accumulator after the first of them (it takes long), then dies
      -- on the 10th; the third folds the rest
      local first, slow, second = mp.RawValue("i", 0), mp.RawValue("i", 0), mp.RawValue("i", 0)
      local sum, stats = mp.pipeline(range(100), { on_error = "collect" })
        :reduce(function(acc, x)
          mp.sleep(0.001)
          if x == 50 and first:compare_and_set(0, 1) then os.exit(3) end
          if x == 1 and first.value == 1 and slow:compare_and_set(0, 1) then mp.sleep(0.6) end
          if x == 10 and first.value == 1 and second:compare_and_set(0, 1) then os.exit(4) end
          return acc + x
        end, 0, { retries = 1 })
        :run()
      assert.are.same({}, stats.errors)
      assert.are.equal(5050, sum)
      assert.are.same({ 1, 1 }, { slow.value, second.value })
    end)

    it("raises Timeout with stage and index with on_error = 'raise'", function()
      local err = errof(function()
        mp.pipeline(range(10)):map(function(x)
          if x == 3 then mp.sleep(60) end
          return x
        end, { timeout = 0.3, name = "slow" }):run()
      end)
      assert.is_true(mp.iserror(err, "Timeout"), tostring(err))
      assert.are.same({ "slow", 3 }, { err.stage, err.index })
    end)

    it("raises EncodeError from run, naming the stage, for a function that cannot travel", function()
      local co = coroutine.create(print)
      local err = errof(function()
        mp.pipeline({ 1 }):map(function() return co end, { name = "bad" }):run()
      end)
      assert.is_true(mp.iserror(err, "EncodeError"), tostring(err))
      assert.matches("stage 'bad'<upvalue 'co'>", err.message)
      assert.matches("pipeline_spec.lua:%d+: $", err.where)
    end)

    it("names a source item that cannot travel (EncodeError, stage 'source')", function()
      local err = errof(function()
        mp.pipeline({ 1, 2, coroutine.create(print), 4 }):map(function(x) return x end):run()
      end)
      assert.is_true(mp.iserror(err, "EncodeError"), tostring(err))
      assert.are.same({ "source", 3 }, { err.stage, err.index })
    end)

    it("names the item that cannot travel (EncodeError)", function()
      local err = errof(function()
        mp.pipeline({ 1, 2, 3 }):map(function(x)
          if x == 2 then return coroutine.create(print) end
          return x
        end):run()
      end)
      assert.is_true(mp.iserror(err, "EncodeError"), tostring(err))
      assert.are.same({ "map", 2 }, { err.stage, err.index })
    end)

    it("raises the source iterator's error with the source's name and position", function()
      local i = 0
      local err = errof(function()
        mp.pipeline(function()
          i = i + 1
          if i == 30 then error("source broke") end
          return i
        end):map(function(x) return x end, { workers = 2 }):run()
      end)
      assert.matches("source broke", tostring(err))
      assert.are.same({ "source", 30 }, { err.stage, err.index })
    end)

    it("stops everything when the sink raises", function()
      local err = errof(function()
        mp.pipeline(range(10000)):map(function(x) return x end, { workers = 2 }):each(function(x)
          if x == 100 then error("sink says no") end
        end):run()
      end)
      assert.matches("sink says no", tostring(err))
    end)
  end)

  describe("iter", function()
    it("yields the items lazily, in order", function()
      local got = {}
      for v in mp.pipeline(range(500)):map(function(x) return x + 1 end, { workers = 2 }):iter() do
        got[#got + 1] = v
      end
      assert.are.equal(500, #got)
      assert.are.equal(2, got[1])
      assert.are.equal(501, got[500])
    end)

    it("stops every process when the loop is left with break", function()
      local n = 0
      local i = 0
      local endless = function() i = i + 1; return i end
      for v in mp.pipeline(endless):map(function(x) return x end, { workers = 2 }):map(uneven, { workers = 2 }):iter() do
        n = n + 1
        if v == 1000 then break end
      end
      assert.are.equal(1000, n)
      -- after_each checks that no process is left
    end)

    it("stops every process when its closing value is closed (<close>)", function()
      local it, st, ctl, closer = mp.pipeline(range(100000)):map(function(x) return x end, { workers = 2 }):iter()
      assert.are.equal(1, it(st, ctl))
      do
        local _ <close> = closer
      end
      assert.are.equal(0, #mp.active_children())
    end)

    it("stops every process when the loop body raises", function()
      local ok = pcall(function()
        for v in mp.pipeline(range(100000)):map(function(x) return x end, { workers = 2 }):iter() do
          if v == 10 then error("body") end
        end
      end)
      assert.is_false(ok)
    end)
  end)

  describe("memory", function()
    it("bounds how far the source runs ahead of a slow item (the reorder window)", function()
      local i = 0
      local pulled_when_first = nil
      local function src()
        i = i + 1
        if i <= 200000 then return i end
      end
      local n = 0
      mp.pipeline(src)
        :map(function(x)
          if x == 1 then mp.sleep(0.5) end
          return x
        end, { workers = 2 })
        :each(function(x)
          n = n + 1
          if x == 1 then pulled_when_first = i end
        end)
        :run()
      assert.are.equal(200000, n)
      -- while item 1 held the output back, at most a window of chunks went in
      assert(pulled_when_first < 50000, "the source ran " .. tostring(pulled_when_first) .. " items ahead")
    end)

    it("keeps the parent flat for 1M items through a slow sink", function()
      local i = 0
      local N = 1000000
      local function src()
        i = i + 1
        if i <= N then return i end
      end
      local before, peak = rss_kib(), 0
      local count = 0
      mp.pipeline(src)
        :map(function(x) return x + 1 end, { workers = 2 })
        :each(function()
          count = count + 1
          if count % 50000 == 0 then
            local s = 0
            for k = 1, 200000 do s = s + k end -- the slow part
            peak = math.max(peak, rss_kib())
          end
        end)
        :run()
      assert.are.equal(N, count)
      peak = math.max(peak, rss_kib())
      assert((peak - before) < 60 * 1024, ("grew by %d KiB"):format(peak - before))
    end)
  end)

  describe("bad input", function()
    local function bad(f, pattern)
      local err = errof(f)
      assert.is_true(mp.iserror(err, "ValueError"), tostring(err))
      assert.matches(pattern, err.message)
      assert.matches("pipeline_spec.lua:%d+: $", err.where)
    end

    it("is a ValueError naming what is wrong", function()
      bad(function() mp.pipeline(42) end, "source must be")
      bad(function() mp.pipeline(true) end, "source must be")
      bad(function() mp.pipeline({}):map(42) end, "map: the stage function must be a function")
      bad(function() mp.pipeline({}):filter() end, "filter: the stage function")
      bad(function() mp.pipeline({}):map(print, { workers = 0 }) end, "workers must be an integer >= 1, got 0")
      bad(function() mp.pipeline({}):map(print, { workers = 1.5 }) end, "workers must be an integer >= 1, got 1.5")
      bad(function() mp.pipeline({}):map(print, { workers = "2" }) end, "workers must be an integer")
      bad(function() mp.pipeline({}, { on_error = "ignore" }) end, "on_error must be 'raise' or 'collect'")
      bad(function() mp.pipeline({}):batch(0) end, "batch: the size must be an integer >= 1, got 0")
      bad(function() mp.pipeline({}):map(print, { bogus = 1 }) end, "unknown option 'bogus'")
      bad(function() mp.pipeline({}):map(print, { timeout = -1 }) end, "timeout must be a positive number")
      bad(function() mp.pipeline({}):each(1) end, "sink must be a function")
      bad(function() mp.pipeline.produce(1) end, "produce: fn must be a function")
      bad(function() mp.pipeline.produce(print, { workers = 0 }) end, "workers must be an integer >= 1")
      bad(function() mp.pipeline({}):reduce(print, 0):map(print) end, "no stage can follow reduce")
    end)
  end)

  describe("progress", function()
    local PROGRESS_SCRIPT = [[
      local mp = require "corral"
      local items = {}
      for i = 1, 200 do items[i] = i end
      local r = mp.pipeline(items, { progress = true })
        :map(function(x) mp.sleep(0.001) return x end, { workers = 2, name = "slow" })
        :filter(function(x) return x % 2 == 0 end, { name = "even" })
        :run()
      print("done " .. #r)
    ]]

    it("draws one line per stage on a terminal, naming the bottleneck", function()
      local Terminal = require "spec.terminal"
      local script = H.script(PROGRESS_SCRIPT)
      local term = Terminal.new(H.shell_quote(H.exe) .. " " .. H.shell_quote(script), { CORRAL_START_METHOD = H.method })
      local ok, err = pcall(function()
        term:wait_match("done 100")
        local screen = term:screen()
        assert.matches("slow%s+200 out%s+[%d%.]+/s%s+queue %S+%s+busy%s+%d+%%", screen)
        assert.matches("even%s+100 out", screen)
        assert.matches("<%- bottleneck", screen)
      end)
      term:kill()
      assert(ok, err)
    end)

    it("runs stage functions typed at the REPL", function()
      local Terminal = require "spec.terminal"
      local history = os.tmpname()
      local term = Terminal.new(H.shell_quote(H.exe), { CORRAL_START_METHOD = H.method, CORRAL_HISTORY = history })
      local ok, err = pcall(function()
        term:wait_match("\n> ")
        term:send_line("local k = 10; f = function(x) return x * k end")
        term:send_line("r = corral.pipeline({1, 2, 3}):map(f, { workers = 2 }):run()")
        term:send_line("print('got', table.concat(r, ','))")
        term:wait_match("got%s+10,20,30")
        term:send_line("os.exit(0)")
        assert.truthy(term:exited(), term:screen())
      end)
      term:kill()
      os.remove(history)
      assert(ok, err)
    end)

    it("draws nothing when stderr is not a terminal", function()
      local out, err, code = H.run({ H.script(PROGRESS_SCRIPT) }, nil, { CORRAL_START_METHOD = H.method })
      assert.are.equal(0, code, err)
      assert.are.equal("done 100\n", out)
      assert.are.equal("", err)
    end)
  end)

  describe("Ctrl-C", function()
    it("stops every stage and exits promptly with no process left", function()
      local script = H.script([[
        local mp = require "corral"
        print("pid " .. mp.getpid()); io.stdout:flush()
        local i = 0
        local ok, err = pcall(function()
          mp.pipeline(function() i = i + 1; return i end)
            :map(function(x) mp.sleep(0.001) return x end, { workers = 2 })
            :map(function(x) return x end, { workers = 2 })
            :each(function(x) if x == 50 then print("ready"); io.stdout:flush() end end)
            :run()
        end)
        -- Interrupted when it came during a corral wait, the host's
        -- "interrupted!" when the parent was running Lua: iserror takes both
        print("caught " .. tostring(mp.iserror(err, "Interrupted")))
        print("children " .. #mp.active_children()); io.stdout:flush()
      ]])
      local cmd = ([[
exec 3< <(CORRAL_START_METHOD=%s setsid %s %s 2>&1; echo "status $?")
read -r -t 30 -u 3 line; pgid=${line#pid }
while IFS= read -r -t 30 -u 3 line; do echo "$line"; [ "$line" = ready ] && break; done
kill -INT -- -"$pgid"
timeout 20 cat <&3
ps -o pid=,args= -g "$pgid" | grep -q . && echo "left: $(ps -o pid=,args= -g "$pgid" | tr '\n' ' ')"
kill -KILL -- -"$pgid" 2>/dev/null
true
]]):format(H.method, H.shell_quote(H.exe), H.shell_quote(script))
      local f = io.popen("env -u LD_PRELOAD bash -c " .. H.shell_quote(cmd))
      local out = f:read("a")
      f:close()
      assert.matches("\ncaught true\n", out)
      assert.matches("\nchildren 0\n", out)
      assert.matches("\nstatus 0\n", out)
      assert.not_matches("left:", out)
    end)
  end)
end)
