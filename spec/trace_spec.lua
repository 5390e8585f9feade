-- The timeline: `corral --trace FILE` and mp.trace write one Chrome
-- trace-event file for every process, loadable (by a strict JSON reader,
-- once the open array is closed as a viewer does) even when a worker is
-- SIGKILLed; named tracks, every task in a slice (a slice each, or
-- brief ones sharing one) that never overlaps another on its track,
-- instants for faults, counters for a pool's backlog; a pipeline's worker
-- tracks, chunk slices, a flow per chunk and queue counters.
-- Runs under both start methods.
local H = require "spec.helper"
local J = require "spec.json"
local mp = H.mp
local killed_worker = require "spec.killed_worker"

local function tmpfile()
  local path = os.tmpname()
  return path
end

-- What a trace holds, by track: names[pid], slices[pid] (X events in
-- start order), instants, counters.
local function analyse(events)
  local t = { names = {}, threads = {}, slices = {}, instants = {}, counters = {}, flows = {}, pids = {}, all = events }
  for _, e in ipairs(events) do
    assert.is_number(e.pid)
    assert.is_string(e.ph)
    t.pids[e.pid] = true
    if e.ph == "M" and e.name == "process_name" then t.names[e.pid] = e.args.name
    elseif e.ph == "M" and e.name == "thread_name" then t.threads[e.pid] = e.args.name
    elseif e.ph == "X" then
      assert.is_number(e.ts)
      assert.is_number(e.dur)
      assert.is_true(e.dur >= 0)
      assert.are.equal(e.pid, e.tid)
      local s = t.slices[e.pid] or {}
      t.slices[e.pid] = s
      s[#s + 1] = e
    elseif e.ph == "i" then t.instants[#t.instants + 1] = e
    elseif e.ph == "C" then t.counters[#t.counters + 1] = e
    elseif e.ph == "s" or e.ph == "t" or e.ph == "f" then
      assert.is_number(e.id)
      t.flows[#t.flows + 1] = e
    end
  end
  for _, s in pairs(t.slices) do
    table.sort(s, function(a, b)
      if a.ts ~= b.ts then return a.ts < b.ts end
      return a.dur > b.dur -- the enclosing one first
    end)
  end
  return t
end

-- Every track's slices nest: each one ends before the next starts, or
-- holds it whole (Perfetto drops slices that overlap otherwise). Slices of
-- category "task" never hold one another.
local function assert_nested(t)
  local EPS = 0.001 -- the file's resolution: 1 ns
  for pid, s in pairs(t.slices) do
    local open = {}
    for _, e in ipairs(s) do
      while #open > 0 and open[#open].ts + open[#open].dur <= e.ts + EPS do open[#open] = nil end
      local top = open[#open]
      if top then
        assert(e.ts + e.dur <= top.ts + top.dur + EPS, ("pid %d: %s at %.3f (dur %.3f) overlaps %s at %.3f (dur %.3f)")
          :format(pid, e.name, e.ts, e.dur, top.name, top.ts, top.dur))
        assert(not (top.cat == "task" and e.cat == "task"), ("pid %d: task slices overlap at %.3f"):format(pid, e.ts))
      end
      open[#open + 1] = e
    end
  end
end

-- The tasks the task slices hold, by name: {map = {tasks =, slices =}, ...}.
-- A slice holds args.tasks tasks (brief ones share a slice).
local function tasks(t)
  local by = {}
  for _, s in pairs(t.slices) do
    for _, e in ipairs(s) do
      if e.cat == "task" then
        local b = by[e.name] or { tasks = 0, slices = 0 }
        by[e.name] = b
        b.tasks, b.slices = b.tasks + e.args.tasks, b.slices + 1
      end
    end
  end
  return by
end

-- The slice named `name` on pid's track that holds time ts, or nil.
local function enclosing(t, pid, ts, name)
  for _, e in ipairs(t.slices[pid] or {}) do
    if e.name == name and e.ts <= ts and ts <= e.ts + e.dur then return e end
  end
  return nil
end

local function find_instant(t, name, pid)
  for _, e in ipairs(t.instants) do
    if e.name == name and (pid == nil or e.pid == pid) then return e end
  end
  return nil
end

-- Runs src with `corral --trace path`; returns the analysed trace, stdout.
local function run_traced(src)
  local path = tmpfile()
  local out, err, code = H.run({ "--trace", path, H.script(src) })
  assert.are.equal(0, code, "corral failed: " .. err)
  local ok, events = pcall(J.read_trace, path)
  os.remove(path)
  assert(ok, tostring(events))
  return analyse(events), out, err
end

describe("trace (" .. H.method .. ")", function()
  after_each(function()
    collectgarbage()
    H.cleanup()
    H.assert_no_children()
  end)

  it("a traced pool run: named tracks, every task in a slice, brief ones sharing, nested slices, backlog counters", function()
    local t, out = run_traced([[
      local mp = require "corral"
      local pool <close> = mp.Pool(3)
      local r = pool:map(function(x) return x + 1 end, (function() local t = {} for i = 1, 200 do t[i] = i end return t end)(), 1)
      assert(#r == 200)
      local pairs_ = {}
      for i = 1, 12 do pairs_[i] = { i, 2 } end
      pool:starmap(function(a, b) mp.sleep(0.002) return a * b end, pairs_, 1)
      pool:apply(function() return 1 end)
      io.write("pids")
      for _, w in pairs(pool:stats().workers) do io.write(" ", w.pid) end
      io.write("\n")
      pool:close()
      pool:join()
    ]])
    assert_nested(t)
    -- every process that wrote or was written about has a named track
    for pid in pairs(t.pids) do
      assert.is_string(t.names[pid], "no name for pid " .. pid)
      assert.are.equal(t.names[pid], t.threads[pid])
    end
    local pids = {}
    for pid in out:match("pids([%d ]+)"):gmatch("%d+") do pids[#pids + 1] = tonumber(pid) end
    assert.are.equal(3, #pids)
    local labels = {}
    for _, pid in ipairs(pids) do labels[t.names[pid]] = true end
    assert.are.same({ ["Pool-1 worker 1"] = true, ["Pool-1 worker 2"] = true, ["Pool-1 worker 3"] = true }, labels)
    local main
    for pid, name in pairs(t.names) do if name == "main" then main = pid end end
    assert.is_number(main)
    -- every task is in a slice: 200 map, 12 starmap, 1 apply; the 2 ms
    -- starmap tasks have one each, the brief map ones (x + 1) share
    -- slices, each a run of tasks in a row of one batch
    local by = tasks(t)
    assert.are.equal(200, by.map.tasks)
    assert.are.equal(12, by.starmap.tasks)
    assert.are.equal(12, by.starmap.slices)
    assert.are.equal(1, by.apply.tasks)
    assert.are.equal(1, by.apply.slices)
    assert.is_true(by.map.slices < 200, "no brief tasks shared a slice")
    local by_name = {}
    for _, s in pairs(t.slices) do
      for _, e in ipairs(s) do
        by_name[e.name] = (by_name[e.name] or 0) + 1
        if e.cat == "task" then
          assert.is_number(e.args.batch)
          assert.is_number(e.args.task)
          assert.is_true(e.args.tasks >= 1)
          assert.are.equal(e.args.tasks, e.args.items) -- chunksize 1
          if e.name == "starmap" then
            assert.is_true(e.dur >= 2000, "a 2 ms task's slice of " .. e.dur .. " us")
            assert.are.equal(1, e.args.tasks)
          elseif e.args.tasks > 1 then -- tasks of under 10 us each, back to back, about 1 ms at most
            assert.is_true(e.dur < 10 * e.args.tasks, ("%d tasks in %.3f us"):format(e.args.tasks, e.dur))
            assert.is_true(e.dur < 1010, "a run longer than 1 ms: " .. e.dur)
          end
        end
      end
    end
    -- a lifetime slice for each process, the workers' holding their tasks
    assert.are.equal(4, by_name.process)
    for _, pid in ipairs(pids) do
      assert.are.equal("process", t.slices[pid][1].name)
      assert.are.equal(0, t.slices[pid][1].args.exitcode)
    end
    -- the backlog counter, on the main track, ending at zero
    assert.is_true(#t.counters >= 2)
    local last
    for _, c in ipairs(t.counters) do
      assert.are.equal("Pool-1 backlog", c.name)
      assert.are.equal(main, c.pid)
      assert.is_number(c.args.queued)
      assert.is_number(c.args.in_flight)
      if not last or c.ts >= last.ts then last = c end
    end
    assert.are.same({ queued = 0, in_flight = 0 }, last.args)
  end)

  it("a SIGKILLed worker leaves a loadable trace with WorkerLost and its replacement", function()
    local t, out = run_traced(killed_worker())
    assert_nested(t)
    local victim = tonumber(out:match("victim (%d+)"))
    assert.is_string(t.names[victim])
    assert.truthy(t.names[victim]:match("^Pool%-1 worker %d$"))
    local lost = find_instant(t, "WorkerLost", victim)
    assert.is_table(lost, "no WorkerLost instant on the killed worker's track")
    assert.are.equal(-9, lost.args.exitcode)
    assert.is_table(find_instant(t, "worker died", victim))
    local replaced = find_instant(t, "worker replaced")
    assert.is_table(replaced)
    assert.are.equal(victim, replaced.args.old_pid)
    assert.is_string(t.names[replaced.args.new_pid])
    -- its lifetime is there too, ended by the signal
    local life = t.slices[victim][1]
    assert.are.equal("process", life.name)
    assert.are.equal(-9, life.args.exitcode)
    for pid in pairs(t.pids) do assert.is_string(t.names[pid], "no name for pid " .. pid) end
  end)

  it("a task past its time limit gives a Timeout instant on its worker's track", function()
    local t, out = run_traced([[
      local mp = require "corral"
      local pool <close> = mp.Pool(1)
      local ar = pool:apply_async(function() print("pid " .. mp.getpid()); io.stdout:flush(); mp.sleep(60) end, {}, { timeout = 0.2 })
      local ok, err = pcall(ar.get, ar)
      assert(not ok and mp.iserror(err, "Timeout"), tostring(err))
    ]])
    local pid = tonumber(out:match("pid (%d+)"))
    local e = find_instant(t, "Timeout", pid)
    assert.is_table(e)
    assert.are.equal(0.2, e.args.limit)
  end)

  it("a traced pipeline run: a track per worker, a slice per chunk, a flow per chunk, queue counters, WorkerLost", function()
    local t, out = run_traced([[
      local mp = require "corral"
      local src = {}
      for i = 1, 300 do src[i] = i end
      local r, stats = mp.pipeline(src, { name = "etl", on_error = "collect" })
        :map(function(x)
          if x == 77 then os.execute("kill -9 " .. mp.getpid()); mp.sleep(60) end
          return x
        end, { workers = 2, name = "parse" })
        :map(function(x) return 2 * x end, { name = "double" })
        :run()
      assert(#r == 299 and #stats.errors == 1, tostring(stats.errors[1]))
      print("lost " .. stats.errors[1].pid .. " main " .. mp.getpid())
    ]])
    assert_nested(t)
    local victim, main = out:match("lost (%d+) main (%d+)")
    victim, main = tonumber(victim), tonumber(main)
    assert.are.equal("main", t.names[main])
    -- every process that ran has a named track: the main one, or a worker's
    local labels = {}
    for pid in pairs(t.pids) do
      local name = t.names[pid]
      assert.is_string(name, "no name for pid " .. pid)
      assert.are.equal(name, t.threads[pid])
      assert.are.equal("process", t.slices[pid][1].name)
      if pid ~= main then labels[name] = true end
    end
    assert.are.same({ ["pipeline etl / parse #1"] = true, ["pipeline etl / parse #2"] = true,
                      ["pipeline etl / double #1"] = true }, labels)
    -- a slice per chunk on its worker's track: every item that reached the
    -- last stage is in exactly one of them
    local seen, items = {}, 0
    for pid, s in pairs(t.slices) do
      for _, e in ipairs(s) do
        if e.cat == "pipeline" then
          assert.are.equal(t.names[pid]:match("/ (%a+) #"), e.name)
          assert.is_number(e.args.first)
          assert.is_true(e.args.items >= 1)
          if e.name == "double" then
            items = items + e.args.items
            assert.is_nil(seen[e.args.seq])
            seen[e.args.seq] = true
          end
        end
      end
    end
    assert.are.equal(299, items)
    -- a flow per chunk links its slices: "s" inside its slice at parse,
    -- "f" inside its slice at double (the same seq); what the killed
    -- worker had not written yet is gone (an "s", or its slice too)
    local parsed = {}
    for pid, s in pairs(t.slices) do
      for _, e in ipairs(s) do if e.name == "parse" then parsed[e.args.seq] = pid end end
    end
    local flows = {}
    for _, e in ipairs(t.flows) do
      assert.are.equal("pipeline", e.cat)
      local f = flows[e.id] or {}
      flows[e.id] = f
      assert.is_nil(f[e.ph], "two " .. e.ph .. " events for flow " .. e.id)
      f[e.ph] = e
    end
    local ended = 0
    for id, f in pairs(flows) do
      assert.is_nil(f.t) -- two stages: no middle step
      if f.f then
        ended = ended + 1
        local last = enclosing(t, f.f.pid, f.f.ts, "double")
        assert.is_table(last, "flow " .. id .. " ends outside a double slice")
        assert.are.equal(last.args.seq, id & 0x1fffffff)
        if f.s then
          local first = enclosing(t, f.s.pid, f.s.ts, "parse")
          assert.is_table(first, "flow " .. id .. " starts outside a parse slice")
          assert.are.equal(first.args.seq, last.args.seq)
        else
          local pid = parsed[last.args.seq]
          assert(pid == nil or pid == victim, "flow " .. id .. " has no start, and its chunk's parse slice is on a live worker's track")
        end
      end
    end
    local chunks = 0
    for _ in pairs(seen) do chunks = chunks + 1 end
    assert.are.equal(chunks, ended)
    -- the killed worker's item, its death and its replacement
    assert.truthy(t.names[victim]:match("^pipeline etl / parse #%d$"))
    local lost = find_instant(t, "WorkerLost", victim)
    assert.is_table(lost, "no WorkerLost instant on the killed worker's track")
    assert.are.same({ 77, -9 }, { lost.args.item, lost.args.exitcode })
    assert.is_table(find_instant(t, "worker died", victim))
    local replaced
    for _, e in ipairs(t.instants) do
      if e.name == "worker replaced" and e.args.old_pid == victim then replaced = e end
    end
    assert.is_table(replaced)
    assert.are.equal(main, replaced.pid)
    assert.are.equal("parse", replaced.args.stage)
    assert.is_string(t.names[replaced.args.new_pid])
    -- a fill counter for each stage's queue, on the main track
    local queues = {}
    for _, c in ipairs(t.counters) do
      assert.are.equal(main, c.pid)
      assert.is_number(c.args.chunks)
      queues[c.name] = true
    end
    assert.are.same({ ["pipeline etl / parse queue"] = true, ["pipeline etl / double queue"] = true }, queues)
  end)

  it("a pipeline item past its stage's time limit gives Timeout instants on its worker's track", function()
    local t, out = run_traced([[
      local mp = require "corral"
      local r, stats = mp.pipeline({ 1, 2, 3, 4 }, { on_error = "collect" })
        :map(function(x) if x == 3 then mp.sleep(60) end return x end, { timeout = 0.2 })
        :run()
      assert(#r == 3 and mp.iserror(stats.errors[1], "Timeout"), tostring(stats.errors[1]))
      print("pid " .. stats.errors[1].pid)
    ]])
    local pid = tonumber(out:match("pid (%d+)"))
    assert.are.equal("pipeline 1 / map #1", t.names[pid])
    local kill, item
    for _, e in ipairs(t.instants) do
      if e.name == "Timeout" and e.pid == pid then
        if e.args.item then item = e else kill = e end
      end
    end
    assert.is_table(kill, "no Timeout instant at the kill")
    assert.are.same({ limit = 0.2 }, kill.args)
    assert.are.same({ item = 3, limit = 0.2 }, item.args)
    assert.is_table(find_instant(t, "worker died", pid))
  end)

  it("--trace on a script that starts no process gives a valid file with the main track", function()
    local t = run_traced([[local x = 1 + 1]])
    local pids = {}
    for pid in pairs(t.pids) do pids[#pids + 1] = pid end
    assert.are.equal(1, #pids)
    assert.are.equal("main", t.names[pids[1]])
    assert.are.equal("process", t.slices[pids[1]][1].name)
  end)

  it("a bad path is a clear error at start, and the script does not run", function()
    local out, err, code = H.run({ "--trace", "/nonexistent-dir/x.json", H.script([[print("ran")]]) })
    assert.are_not.equal(0, code)
    assert.are.equal("", out)
    assert.truthy(err:find("cannot open the trace file '/nonexistent-dir/x.json': No such file or directory", 1, true), err)
    out, err, code = H.run({ "--trace" })
    assert.are_not.equal(0, code)
    assert.truthy(err:find("'--trace' needs an argument", 1, true), err)
  end)

  it("mp.trace: a bad path raises OSError where it was called; bad arguments are ValueErrors", function()
    local ok, err = pcall(mp.trace, "/nonexistent-dir/x.json")
    assert.is_false(ok)
    assert.are.equal("OSError", err.kind)
    assert.truthy(err.message:find("No such file or directory", 1, true))
    assert.truthy(tostring(err):find("trace_spec.lua:%d+:"))
    assert.is_nil(mp.trace())
    assert.are.equal("ValueError", select(2, pcall(mp.trace, 42)).kind)
    assert.are.equal("ValueError", select(2, pcall(mp.trace, "")).kind)
  end)

  it("mp.trace(path) traces the processes started after it, until mp.trace(false)", function()
    local path = tmpfile()
    local before = H.start(function() end)
    H.join_ok(before)
    assert.is_true(mp.trace(path))
    local t_open = mp.time()
    assert.truthy(mp.trace():find(path:match("[^/]+$"), 1, true))
    local trace = require "corral.trace"
    local p = mp.Process{ name = "child", target = function()
      local t0 = mp.time()
      trace.slice("work", t0)
      trace.instant("here", { n = 1 })
      trace.counter("level", { v = 3 })
      local id = trace.flow_id()
      trace.flow("s", id, "item", t0)
    end }
    p:start()
    H.join_ok(p)
    trace.slice("parent work", t_open)
    mp.trace(false)
    assert.is_nil(mp.trace())
    local after = H.start(function() trace.instant("not traced") end)
    H.join_ok(after)
    local t = analyse(J.read_trace(path))
    os.remove(path)
    assert_nested(t)
    assert.are.equal("child", t.names[p.pid])
    assert.is_nil(t.names[before.pid])
    assert.is_nil(t.pids[after.pid])
    local names = {}
    for _, e in ipairs(t.all) do names[e.name .. "@" .. e.pid] = e end
    assert.is_table(names["work@" .. p.pid])
    assert.are.equal(1, names["here@" .. p.pid].args.n)
    assert.are.equal(3, names["level@" .. p.pid].args.v)
    assert.are.equal("s", names["item@" .. p.pid].ph)
    assert.is_table(names["parent work@" .. mp.getpid()])
    assert.are.equal("process", t.slices[p.pid][1].name)
  end)

  it("pool:stats() shows each worker while it runs", function()
    local pool <close> = mp.Pool(2)
    pool:map(function(x) return x end, { 1, 2, 3, 4, 5, 6 }, 1)
    local started = mp.Event()
    local ar = pool:apply_async(function(e) e:set(); mp.sleep(0.3); return 1 end, { started })
    assert.is_true(started:wait(30))
    local busy
    assert.is_truthy(H.wait_until(function()
      for _, w in pairs(pool:stats().workers) do if w.task_age then busy = w return true end end
    end, 10))
    local st = pool:stats()
    assert.are.equal(2, #st.workers)
    assert.is_true(busy.task_age >= 0)
    assert.is_true(busy.busy > 0 and busy.busy <= 1)
    assert.are.equal(1, busy.held)
    assert.are.equal(1, st.in_flight)
    assert.are.equal(0, st.queued)
    assert.are.equal(6, st.tasks_done)
    for slot, w in pairs(st.workers) do
      assert.are.equal(slot, w.slot)
      assert.is_number(w.pid)
      assert.is_true(w.alive)
    end
    assert.are.equal(1, ar:get())
    assert.is_truthy(H.wait_until(function() return pool:stats().tasks_done == 7 end, 10))
    for _, w in pairs(pool:stats().workers) do assert.is_nil(w.task_age) end
    assert.are.equal(0, pool:stats().replaced)
  end)
end)
