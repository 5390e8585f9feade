-- Synchronisation across processes: Lock, RLock, Semaphore,
-- BoundedSemaphore, Event, Condition, Barrier. Ports the behaviours of
-- Python's multiprocessing tests (test_lock, test_rlock, test_semaphore,
-- test_bounded_semaphore, test_event, test_condition, test_barrier), the
-- seed's counter example, and kills of a holder of each lock-like object.
-- Runs under both start methods (CORRAL_START_METHOD). Children report
-- failure through their exit code (an assert fails: exit code 1).
local H = require "spec.helper"
local mp = H.mp
-- Children's code uses only locals: under spawn a function travels with
-- its upvalues, and busted's environment (its assert, its error) cannot.
local G = package.loaded._G
local check, pcall, tostring, error = G.assert, G.pcall, G.tostring, G.error

local start = H.start

local join_ok = H.join_ok

local raises = H.raises

describe("sync (" .. H.method .. ")", function()
  after_each(function() H.assert_no_children() end)

  describe("Lock", function()
    it("acquires, refuses a second acquire, releases", function()
      local lock = mp.Lock()
      assert.is_true(lock:acquire())
      assert.is_false(lock:acquire(false))
      assert.is_false(lock:acquire(0))
      assert.is_false(lock:acquire(0.02))
      assert.is_nil(lock:release())
      raises("ValueError", lock.release, lock)
      assert.is_true(lock:acquire(true, 1))
      lock:release()
    end)

    it("times out while held by another process, then gets it", function()
      local lock, held, done = mp.Lock(), mp.Event(), mp.Event()
      local p = start(function(l, h, d)
        check(l:acquire())
        h:set()
        check(d:wait(30))
        l:release()
      end, lock, held, done)
      assert.is_true(held:wait(30))
      assert.is_false(lock:acquire(0.05))
      raises("PermissionError", lock.release, lock)
      done:set()
      assert.is_true(lock:acquire(30))
      lock:release()
      join_ok(p)
    end)

    it("guard() releases at the end of the scope, with() even on error", function()
      local lock = mp.Lock()
      do
        local _ <close> = lock:guard()
        assert.is_false(lock:acquire(0))
      end
      assert.is_true(lock:acquire(0)); lock:release()
      assert.are.same({ 3, "x" }, { lock:with(function(a, b) return a + 1, b end, 2, "x") })
      local ok, err = pcall(lock.with, lock, function() error("boom") end)
      assert.is_false(ok)
      assert.matches("boom", tostring(err))
      assert.is_true(lock:acquire(0)); lock:release()
    end)

    it("is a handle: named, closable, usable as an upvalue", function()
      local lock = mp.Lock()
      assert.matches("^Lock %(", tostring(lock))
      local p = start(function() check(lock:acquire(0)); lock:release() end)
      join_ok(p)
      lock:close()
      lock:close()
      assert.matches("closed", tostring(lock))
      local err = raises("Closed", lock.acquire, lock)
      assert.matches("attempt to use a closed Lock", tostring(err))
    end)

    it("travels inside a message", function()
      if not mp.Queue then return pending("no Queue yet") end
      local q = mp.Queue()
      local lock = mp.Lock()
      q:put({ lock = lock })
      local got = q:get(10)
      assert.is_true(got.lock:acquire(0))
      assert.is_false(lock:acquire(0))
      got.lock:release()
    end)

    it("tells the next acquirer when its holder was killed (OwnerDied), and the rest go on", function()
      local lock, held, never = mp.Lock(), mp.Event(), mp.Event()
      local holder = start(function() check(lock:acquire()); held:set(); never:wait() end)
      assert.is_true(held:wait(30))
      local waiter = start(function()
        local ok, err = pcall(lock.acquire, lock, 30)
        check(not ok and mp.iserror(err, "OwnerDied"), tostring(err))
        check(lock:acquire(0)) -- the lock was repaired and released
        lock:release()
      end)
      holder:kill()
      assert.is_true(holder:join(30))
      join_ok(waiter)
      assert.is_true(lock:acquire(5))
      lock:release()
    end)
  end)

  describe("RLock", function()
    it("is reentrant and checks its owner", function()
      local r = mp.RLock()
      raises("ValueError", r.release, r) -- unheld: as a Lock
      assert.is_true(r:acquire()); assert.is_true(r:acquire()); assert.is_true(r:acquire(0))
      r:release(); r:release(); r:release()
      raises("ValueError", r.release, r)
      local held, done = mp.Event(), mp.Event()
      local p = start(function() check(r:acquire()); held:set(); check(done:wait(30)); r:release() end)
      assert.is_true(held:wait(30))
      raises("PermissionError", r.release, r)
      assert.is_false(r:acquire(0.02))
      done:set()
      join_ok(p)
      -- held here before the child tries: held by another process, not unheld
      assert.is_true(r:acquire())
      local c = start(function()
        local ok, err = pcall(r.release, r)
        check(not ok and mp.iserror(err, "PermissionError"))
      end)
      join_ok(c)
      r:release()
    end)

    it("says whether some process holds it (locked)", function()
      local r = mp.RLock()
      assert.is_false(r:locked())
      r:acquire(); r:acquire()
      assert.is_true(r:locked())
      r:release()
      assert.is_true(r:locked())
      r:release()
      assert.is_false(r:locked())
      local held, done = mp.Event(), mp.Event()
      local p = start(function() check(r:acquire()); held:set(); check(done:wait(30)); r:release() end)
      assert.is_true(held:wait(30))
      assert.is_true(r:locked())
      assert.are.equal(0, r:depth())
      done:set()
      join_ok(p)
      assert.is_false(r:locked())
    end)

    it("recovers from a holder killed at depth 2", function()
      local r, held, never = mp.RLock(), mp.Event(), mp.Event()
      local holder = start(function() r:acquire(); r:acquire(); held:set(); never:wait() end)
      assert.is_true(held:wait(30))
      holder:kill()
      assert.is_true(holder:join(30))
      raises("OwnerDied", r.acquire, r, 30)
      assert.is_true(r:acquire(0))
      assert.are.equal(1, r:depth())
      r:release()
      assert.are.equal(0, r:depth())
    end)
  end)

  describe("Semaphore", function()
    it("counts, times out and rejects bad values", function()
      local s = mp.Semaphore(2)
      assert.are.equal(2, s:get_value())
      assert.is_true(s:acquire()); assert.is_true(s:acquire(false))
      assert.is_false(s:acquire(false)); assert.is_false(s:acquire(0.02))
      s:release(); s:release(); s:release()
      assert.are.equal(3, s:get_value())
      raises("ValueError", mp.Semaphore, -1)
      raises("ValueError", mp.BoundedSemaphore, -1)
      assert.matches("^Semaphore", tostring(s))
    end)

    it("Semaphore(3) bounds 8 processes to a peak of 3", function()
      local sem = mp.Semaphore(3)
      local inside, peak = mp.Value('i', 0), mp.Value('i', 0)
      local procs = {}
      for i = 1, 8 do
        procs[i] = start(function()
          for _ = 1, 50 do
            local _ <close> = sem:guard()
            local n = inside:add(1)
            local p = peak.value
            while n > p and not peak:compare_and_set(p, n) do p = peak.value end
            inside:add(-1)
          end
        end)
      end
      for _, p in ipairs(procs) do join_ok(p) end
      assert.is_true(peak.value >= 1 and peak.value <= 3)
      assert.are.equal(3, sem:get_value())
    end)

    it("BoundedSemaphore refuses an over-release", function()
      local b = mp.BoundedSemaphore(2)
      assert.matches("^BoundedSemaphore", tostring(b))
      raises("ValueError", b.release, b)
      b:acquire(); b:release()
      raises("ValueError", b.release, b)
      assert.are.equal(2, b:get_value())
    end)

    it("gives back the slot of a killed holder", function()
      local sem, held, never = mp.BoundedSemaphore(1), mp.Event(), mp.Event()
      local holder = start(function() check(sem:acquire()); held:set(); never:wait() end)
      assert.is_true(held:wait(30))
      local waiter = start(function() check(sem:acquire(30)); sem:release() end)
      holder:kill()
      assert.is_true(holder:join(30))
      join_ok(waiter)
      assert.is_true(sem:acquire(30))
      sem:release()
      raises("ValueError", sem.release, sem) -- given back once only
    end)

    -- Three holders loop over two slots (blocking, timed and non-blocking
    -- acquires, one or two slots at once) and are killed, round after
    -- round: the moment a slot is first seen taken, at a random instant, or
    -- at once; together or one by one (the survivors then give back the
    -- slots of the dead, and may die doing it). Each round, every slot
    -- comes back to acquires that wait for it (generously: about a second
    -- is the promise), and none comes back twice (the semaphore is not
    -- bounded: a slot given back twice would be one more). The seed is
    -- printed; CORRAL_SEED=N replays it.
    it("gives back every slot of holders killed at random points", function()
      local seed = tonumber(os.getenv("CORRAL_SEED")) or mp.getpid()
      io.stderr:write(("\nsemaphore holders killed at random: seed %d\n"):format(seed))
      math.randomseed(seed)
      local sem = mp.Semaphore(2)
      local function holder(s, k)
        local i = k
        while true do
          i = i + 1
          if s:acquire(i % 3 == 0 and nil or i % 3 == 1 and 0.001 or 0) then
            if i % 4 == 0 and s:acquire(false) then s:release() end
            s:release()
          end
        end
      end
      local function busy(seconds)
        local t = mp.time() + seconds
        while mp.time() < t do end
      end
      local stop, rounds = mp.time() + 4, 0
      while rounds < 40 and mp.time() < stop do
        rounds = rounds + 1
        local procs = {}
        for k = 1, 3 do procs[k] = start(holder, sem, k) end
        local point = math.random(3)
        if point == 1 then
          local t = mp.time() + 5
          while sem:get_value() == 2 and mp.time() < t do end
        elseif point == 2 then
          busy(math.random() * 0.02)
        end
        for _, p in ipairs(procs) do
          p:kill()
          if math.random(2) == 1 then busy(math.random() * 0.002) end
        end
        for _, p in ipairs(procs) do assert.is_true(p:join(30)) end
        assert.is_true(sem:acquire(10), "round " .. rounds .. ": a slot did not come back")
        assert.is_true(sem:acquire(10), "round " .. rounds .. ": a slot did not come back")
        assert.is_false(sem:acquire(false), "round " .. rounds .. ": a slot came back twice")
        sem:release(); sem:release()
      end
      assert.is_true(rounds >= 5)
    end)
  end)

  describe("Event", function()
    it("wait times out, then returns once another process sets it", function()
      local e, go = mp.Event(), mp.Event()
      assert.is_false(e:is_set())
      assert.is_false(e:wait(0))
      assert.is_false(e:wait(0.05))
      local p = start(function() check(go:wait(30)); e:set() end)
      go:set()
      assert.is_true(e:wait(30))
      assert.is_true(e:is_set())
      assert.is_true(e:wait())
      e:clear()
      assert.is_false(e:is_set())
      join_ok(p)
      raises("ValueError", e.wait, e, -1)
    end)
  end)

  describe("Condition", function()
    -- Starts n children that each wait once on cond and count their wakeup.
    -- Each counts itself in `ready` under the lock before it waits: once the
    -- caller holds the lock and sees them all counted, they all wait.
    local function waiters(cond, ready, woken, n)
      local procs = {}
      for i = 1, n do
        procs[i] = start(function()
          local _ <close> = cond:guard()
          ready:add(1)
          check(cond:wait(60))
          woken:add(1)
        end)
      end
      return procs
    end

    local function all_waiting(cond, ready, n)
      return H.wait_until(function() return cond:with(function() return ready.value == n end) end, 30)
    end

    it("wait_for times out, and returns once the predicate holds", function()
      local cond = mp.Condition(mp.Lock())
      local state = mp.Value('i', 0)
      cond:acquire()
      assert.is_false(cond:wait_for(function() return state.value == 1 end, 0.05))
      cond:release()
      local p = start(function()
        local _ <close> = cond:guard()
        state.value = 1
        cond:notify_all()
      end)
      do
        local _ <close> = cond:guard()
        assert.is_true(cond:wait_for(function() return state.value == 1 end, 30))
      end
      join_ok(p)
      raises("PermissionError", cond.wait, cond, 0)
      raises("PermissionError", cond.notify, cond)
    end)

    it("notify(n) wakes exactly n, a notify with nobody waiting is not stored, notify_all wakes all", function()
      local cond = mp.Condition()
      local ready, woken = mp.Value('i', 0), mp.Value('i', 0)
      cond:acquire()
      assert.are.equal(0, cond:notify())       -- nobody waits: lost, as in Python
      assert.is_false(cond:wait(0.02))         -- ...so this wait times out
      cond:release()
      local procs = waiters(cond, ready, woken, 5)
      assert.is_true(all_waiting(cond, ready, 5))
      assert.are.equal(2, cond:with(cond.notify, cond, 2))
      assert.is_true(H.wait_until(function() return woken.value == 2 end, 30))
      assert.are.equal(2, woken.value)
      assert.are.equal(3, cond:with(cond.notify_all, cond))
      for _, p in ipairs(procs) do join_ok(p) end
      assert.are.equal(5, woken.value)
    end)

    it("a waiter killed in its wait does not swallow a notify", function()
      local cond, ready, woken = mp.Condition(), mp.Value('i', 0), mp.Value('i', 0)
      local victim = waiters(cond, ready, woken, 1)[1]
      assert.is_true(all_waiting(cond, ready, 1))
      victim:kill()
      assert.is_true(victim:join(30))
      local live = waiters(cond, ready, woken, 1)[1]
      assert.is_true(all_waiting(cond, ready, 2))
      assert.are.equal(1, cond:with(cond.notify, cond, 1))
      join_ok(live)
      assert.are.equal(1, woken.value)
    end)

    it("a process killed holding its lock: the next acquirer is told and goes on", function()
      local cond, held, never = mp.Condition(mp.Lock()), mp.Event(), mp.Event()
      local holder = start(function() cond:acquire(); held:set(); never:wait() end)
      assert.is_true(held:wait(30))
      holder:kill()
      assert.is_true(holder:join(30))
      raises("OwnerDied", cond.acquire, cond, 30)
      local _ <close> = cond:guard()
      assert.are.equal(0, cond:notify())
    end)
  end)

  describe("Barrier", function()
    it("rejects bad arguments", function()
      raises("ValueError", mp.Barrier, 0)
      raises("ValueError", mp.Barrier, 2, 42)
      local b = mp.Barrier(3, nil, 5)
      assert.are.equal(3, b.parties)
      assert.are.equal(0, b.n_waiting)
      assert.is_false(b.broken)
      assert.are.equal(5, b.timeout)
    end)

    it("keeps 5 parties in lockstep over 1000 rounds, unique indices, action before anyone returns", function()
      local P, ROUNDS = 5, 1000
      local actions = mp.Value('i', 0)
      local rounds = mp.Array('i', P)
      local seen = mp.Array('b', P * ROUNDS)
      local barrier = mp.Barrier(P, function() actions:add(1) end, 60)
      local function party(me)
        for r = 1, ROUNDS do
          rounds[me] = r
          local idx = barrier:wait()
          check(idx >= 1 and idx <= P)
          check(actions.value == r, "action ran once, before anybody returned")
          for j = 1, P do
            local rj = rounds[j]
            check(rj == r or rj == r + 1, "lockstep") -- nobody behind, nobody two ahead
          end
          seen[(r - 1) * P + idx] = 1
        end
      end
      local procs = {}
      for me = 1, P - 1 do procs[me] = start(party, me) end
      party(P)
      for _, p in ipairs(procs) do join_ok(p) end
      assert.are.equal(ROUNDS, actions.value)
      for i = 1, P * ROUNDS do check(seen[i] == 1, "duplicate arrival index in round " .. ((i - 1) // P + 1)) end
    end)

    it("abort raises BrokenBarrier in every waiter", function()
      local b = mp.Barrier(4)
      local procs = {}
      for i = 1, 3 do
        procs[i] = start(function()
          local ok, err = pcall(b.wait, b, 60)
          check(not ok and mp.iserror(err, "BrokenBarrier"), tostring(err))
        end)
      end
      assert.is_true(H.wait_until(function() return b.n_waiting == 3 end, 30))
      b:abort()
      for _, p in ipairs(procs) do join_ok(p) end
      assert.is_true(b.broken)
      raises("BrokenBarrier", b.wait, b, 1)
    end)

    it("a timeout breaks it for every party, the late one included; reset repairs it", function()
      local b = mp.Barrier(3)
      local procs = {}
      for i = 1, 2 do
        procs[i] = start(function(t)
          local ok, err = pcall(b.wait, b, t)
          check(not ok and mp.iserror(err, "BrokenBarrier"), tostring(err))
        end, i == 1 and 0.1 or 60)
      end
      for _, p in ipairs(procs) do join_ok(p) end
      assert.is_true(b.broken)
      raises("BrokenBarrier", b.wait, b, 5) -- the late party
      b:reset()
      assert.is_false(b.broken)
      local ps = {}
      for i = 1, 2 do ps[i] = start(function() check(b:wait(60)) end) end
      assert.is_true(b:wait(60) >= 1)
      for _, p in ipairs(ps) do join_ok(p) end
    end)

    it("reset while parties wait breaks their round only", function()
      local b = mp.Barrier(2)
      local p = start(function()
        local ok, err = pcall(b.wait, b, 60)
        check(not ok and mp.iserror(err, "BrokenBarrier"))
        check(b:wait(60))
      end)
      assert.is_true(H.wait_until(function() return b.n_waiting == 1 end, 30))
      b:reset()
      assert.is_true(b:wait(60) >= 1)
      join_ok(p)
    end)

    it("an action that raises breaks the barrier and reaches its caller", function()
      local b = mp.Barrier(2, function() error("action failed") end)
      local p = start(function()
        local ok, err = pcall(b.wait, b, 60)
        check(not ok)
        check(mp.iserror(err, "BrokenBarrier") or tostring(err):find("action failed"))
      end)
      local ok, err = pcall(b.wait, b, 60)
      assert.is_false(ok)
      assert.is_truthy(mp.iserror(err, "BrokenBarrier") or tostring(err):find("action failed"))
      join_ok(p)
      assert.is_true(b.broken)
    end)
  end)

  describe("the seed's counter", function()
    it("two processes, 100000 increments and 100000 decrements under a lock, end at 0", function()
      local counter = mp.Value('i', 0)
      local function work(d)
        local lock = counter:get_lock()
        for _ = 1, 100000 do
          lock:acquire()
          counter.value = counter.value + d
          lock:release()
        end
      end
      local a, b = start(work, 1), start(work, -1)
      join_ok(a); join_ok(b)
      assert.are.equal(0, counter.value)
    end)

    it("with atomic add needs no lock", function()
      local counter = mp.RawValue('i', 0)
      local function work(d) for _ = 1, 100000 do counter:add(d) end end
      local a, b = start(work, 1), start(work, -1)
      join_ok(a); join_ok(b)
      assert.are.equal(0, counter.value)
    end)
  end)
end)
