-- Processes: start, join, exit codes, signals, daemons, nesting, the
-- Process class, and the process-wide queries. Runs under both start
-- methods (CORRAL_START_METHOD).
local H = require "spec.helper"
local mp = H.mp

local function started(opts)
  local p = mp.Process(opts)
  p:start()
  return p
end

local function run_to_end(opts)
  local p = started(opts)
  assert.is_true(p:join(30))
  return p
end

describe("Process (" .. H.method .. ")", function()
  after_each(function()
    H.cleanup()
    H.assert_no_children()
  end)

  describe("exit codes", function()
    it("is 0 when the target returns", function()
      local p = run_to_end{ target = function() end }
      assert.are.equal(0, p.exitcode)
    end)

    it("is 1 for an uncaught error", function()
      local p = run_to_end{ target = function() error("boom") end }
      assert.are.equal(1, p.exitcode)
    end)

    it("is N for os.exit(N)", function()
      for _, n in ipairs{ 2, 7, 255 } do
        local p = run_to_end{ target = function(code) os.exit(code) end, args = { n } }
        assert.are.equal(n, p.exitcode)
      end
    end)

    it("is 0 for os.exit(true) and 1 for os.exit(false), as in Lua", function()
      assert.are.equal(0, run_to_end{ target = function() os.exit(true) end }.exitcode)
      assert.are.equal(1, run_to_end{ target = function() os.exit(false) end }.exitcode)
    end)

    it("is -signum when killed", function()
      local p = started{ target = function() mp.sleep(60) end }
      p:terminate()
      assert.is_true(p:join(30))
      assert.are.equal(-15, p.exitcode)
      local q = started{ target = function() mp.sleep(60) end }
      q:kill()
      assert.is_true(q:join(30))
      assert.are.equal(-9, q.exitcode)
    end)

    it("is nil while the process runs", function()
      local p = mp.Process{ target = function() mp.sleep(60) end }
      assert.is_nil(p.exitcode)
      p:start()
      assert.is_nil(p.exitcode)
      p:kill()
      p:join()
      assert.are.equal(-9, p.exitcode)
    end)

    it("prints the traceback of an uncaught error, prefixed with the process name", function()
      local script = H.script([[
        local p = require("corral").Process{ name = "worker-7", target = function() local t = nil; return t.x end }
        p:start(); p:join()
        print("exitcode", p.exitcode)
      ]])
      local out, err = H.run{ script }
      assert.matches("exitcode\t1", out)
      assert.matches("worker%-7 %(pid %d+%): .-attempt to index", err)
      assert.matches("stack traceback:", err)
    end)
  end)

  describe("join", function()
    it("returns false on timeout while the process is alive, true once it ended", function()
      local p = started{ target = function() mp.sleep(60) end }
      assert.is_false(p:join(0))
      assert.is_false(p:join(0.05))
      assert.is_true(p:is_alive())
      p:kill()
      assert.is_true(p:join(30))
      assert.is_false(p:is_alive())
      assert.is_true(p:join(0)) -- again: still true
    end)

    it("times out after the engine's loop sat idle for longer than the timeout", function()
      local p = started{ target = function() mp.sleep(60) end }
      assert.is_false(p:join(0))
      local t = mp.time()
      while mp.time() - t < 0.2 do end -- no corral wait: the loop's cached clock goes stale
      t = mp.time()
      assert.is_false(p:join(0.05))
      assert.is_true(mp.time() - t < 30, "join(0.05) waited for the process to end")
      p:kill()
      assert.is_true(p:join(30))
    end)

    it("is not needed to notice the end: is_alive and exitcode see it", function()
      local p = started{ target = function() os.exit(6) end }
      assert.truthy(H.wait_until(function() return not p:is_alive() end, 30))
      assert.are.equal(6, p.exitcode)
      local q = started{ target = function() end }
      assert.truthy(H.wait_until(function() return q.exitcode ~= nil end, 30))
      assert.are.equal(0, q.exitcode)
    end)

    it("rejects a bad timeout", function()
      local p = started{ target = function() end }
      local ok, err = pcall(p.join, p, -1)
      assert.is_false(ok)
      assert.is_true(mp.iserror(err, "ValueError"))
      ok, err = pcall(p.join, p, "soon")
      assert.is_false(ok)
      assert.is_true(mp.iserror(err, "ValueError"))
      p:join()
    end)
  end)

  describe("Ctrl-C", function()
    it("interrupts a join, ends the script and leaves no process behind", function()
      local script = H.script([[
        local mp = require "corral"
        local p = mp.Process{ target = function() mp.sleep(60) end }
        p:start()
        print("ready " .. mp.getpid() .. " " .. p.pid)
        io.stdout:flush()
        p:join()
        print("not reached")
      ]])
      -- A process group of its own (setsid), as a terminal's Ctrl-C hits the
      -- whole foreground group.
      local cmd = ("exec 3< <(CORRAL_START_METHOD=%s setsid %s %s 2>&1); read -u 3 tag pgid child; "
        .. "kill -INT -- -$pgid; cat <&3; echo \"child $child\""):format(H.method, H.exe, script)
      local f = io.popen("bash -c " .. H.shell_quote(cmd))
      local out = f:read("a")
      f:close()
      assert.matches("interrupted", out)
      assert.not_matches("not reached", out)
      local child = tonumber(out:match("child (%d+)"))
      assert.truthy(H.wait_until(function()
        return H.ps("stat=", child) == ""
      end, 10))
    end)
  end)

  describe("misuse", function()
    it("raises when joined before start", function()
      local p = mp.Process{ target = function() end }
      local ok, err = pcall(p.join, p)
      assert.is_false(ok)
      assert.is_true(mp.iserror(err, "StateError"))
      assert.matches("started", tostring(err))
    end)

    it("raises when started twice", function()
      local p = started{ target = function() end }
      local ok, err = pcall(p.start, p)
      assert.is_false(ok)
      assert.is_true(mp.iserror(err, "StateError"))
      assert.matches("twice", err.message)
      p:join()
    end)

    it("raises when a live process is closed, and after close", function()
      local p = started{ target = function() mp.sleep(60) end }
      local ok, err = pcall(p.close, p)
      assert.is_false(ok)
      assert.is_true(mp.iserror(err, "StateError"))
      p:kill()
      p:join()
      p:close()
      p:close() -- idempotent
      ok, err = pcall(p.join, p)
      assert.is_false(ok)
      assert.is_true(mp.iserror(err, "Closed"))
      ok, err = pcall(p.start, p)
      assert.is_true(mp.iserror(err, "Closed"))
      assert.are.equal(-9, p.exitcode) -- the code it ended with stays readable
    end)

    it("rejects bad constructor arguments", function()
      for _, bad in ipairs{ { target = 42 }, { args = "x" }, { name = 3 }, { colour = "red" } } do
        local ok, err = pcall(mp.Process, bad)
        assert.is_false(ok)
        assert.is_true(mp.iserror(err, "ValueError"), tostring(err))
      end
      local ok, err = pcall(mp.Process, "target")
      assert.is_false(ok)
      assert.is_true(mp.iserror(err, "ValueError"))
    end)

    it("runs a process without a target (it does nothing)", function()
      assert.are.equal(0, run_to_end{}.exitcode)
    end)
  end)

  describe("many processes", function()
    it("starts and joins 500 in a row without zombies or fd growth", function()
      -- counted after one start and a collection: what the first start
      -- opens once, and what garbage of earlier specs holds, are not growth
      local first = mp.Process{ target = function() end }
      first:start()
      assert.is_true(first:join(30))
      first:close()
      collectgarbage()
      collectgarbage() -- what a finalizer closed in the first cycle is freed in the second
      local before = H.open_fds()
      for i = 1, 500 do
        local p = mp.Process{ target = function(k) if k % 7 == 0 then os.exit(3) end end, args = { i } }
        p:start()
        assert.is_true(p:join(30))
        assert.are.equal(i % 7 == 0 and 3 or 0, p.exitcode)
        p:close()
      end
      collectgarbage()
      collectgarbage()
      assert.are.same({}, H.child_pids())
      -- nothing opened and left open; a descriptor an earlier spec left
      -- and a finalizer closed meanwhile is not growth
      assert.are.same({}, H.new_fds(before, H.open_fds()))
    end)

    it("reports -15 for 100 processes terminated right after start", function()
      local ps = {}
      for i = 1, 100 do
        ps[i] = mp.Process{ target = function() mp.sleep(60) end }
        ps[i]:start()
        ps[i]:terminate()
      end
      for i = 1, 100 do
        assert.is_true(ps[i]:join(30))
        assert.are.equal(-15, ps[i].exitcode)
      end
    end)
  end)

  describe("nesting", function()
    it("lets a child start and join its own children (depth 2, fixed order)", function()
      local script = H.script([[
        local mp = require "corral"
        local function leaf(tag) print("leaf " .. tag) end
        local function middle(tag)
          print("middle " .. tag .. " starts")
          for i = 1, 2 do
            local p = mp.Process{ target = leaf, args = { tag .. "." .. i } }
            p:start(); p:join()
            assert(p.exitcode == 0)
          end
          print("middle " .. tag .. " ends")
        end
        for _, tag in ipairs{ "a", "b" } do
          local p = mp.Process{ target = middle, args = { tag } }
          p:start(); p:join()
          print("exit " .. p.exitcode)
        end
      ]])
      local out, err, code = H.run({ script }, nil, { CORRAL_START_METHOD = H.method })
      assert.are.equal(0, code, err)
      assert.are.equal(table.concat({
        "middle a starts", "leaf a.1", "leaf a.2", "middle a ends", "exit 0",
        "middle b starts", "leaf b.1", "leaf b.2", "middle b ends", "exit 0", "" }, "\n"), out)
    end)

    it("names nested processes after their parent and knows the parent", function()
      local script = H.script([[
        local mp = require "corral"
        local p = mp.Process{ target = function()
          local me = mp.current_process()
          print(me.name, mp.parent_process().name, mp.parent_process().pid == mp.getppid())
          local q = mp.Process{ target = function()
            print(mp.current_process().name, mp.parent_process().name)
          end }
          q:start(); q:join()
        end }
        p:start(); p:join()
        print(mp.current_process().name, mp.parent_process())
      ]])
      local out, err, code = H.run({ script }, nil, { CORRAL_START_METHOD = H.method })
      assert.are.equal(0, code, err)
      assert.are.equal("Process-1\tMainProcess\ttrue\nProcess-1:1\tProcess-1\nMainProcess\tnil\n", out)
    end)
  end)

  describe("module paths", function()
    it("children and pool workers find the modules the parent found through package.path", function()
      local dir = H.module("spec_util_mod", "return { twice = function(x) return 2 * x end }\n")
      local script = H.script(([[
        package.path = %q .. "/?.lua;" .. package.path
        local mp = require "corral"
        local util = require "spec_util_mod"
        local q = mp.Queue()
        local p = mp.Process{ target = function() q:put(util.twice(21)) end }
        p:start(); p:join()
        print(q:get(10), p.exitcode)
        local pool <close> = mp.Pool(2)
        print(pool:apply(function(x) return util.twice(x) end, 4))
      ]]):format(dir))
      local out, err, code = H.run({ script }, nil, { CORRAL_START_METHOD = H.method })
      assert.are.equal("", err)
      assert.are.equal("42\t0\n8\n", out)
      assert.are.equal(0, code)
    end)
  end)

  describe("at exit", function()
    it("joins non-daemon children and terminates daemon ones", function()
      local script = H.script([[
        local mp = require "corral"
        local d = mp.Process{ daemon = true, target = function() mp.sleep(600) end }
        d:start()
        print("daemon " .. d.pid)
        local n = mp.Process{ target = function() mp.sleep(0.2); print("non-daemon done") end }
        n:start()
        print("main done")
      ]])
      local out, err, code = H.run({ script }, nil, { CORRAL_START_METHOD = H.method })
      assert.are.equal(0, code, err)
      local dpid = tonumber(out:match("daemon (%d+)"))
      assert.matches("main done\nnon%-daemon done\n$", out)
      -- the daemon is gone (the corral process reaped it before exiting)
      assert.are.equal("", H.ps("pid=", dpid))
    end)

    it("kills daemon children when the parent is SIGKILLed", function()
      local script = H.script([[
        local mp = require "corral"
        local d = mp.Process{ daemon = true, target = function() mp.sleep(600) end }
        d:start()
        print(d.pid)
        io.stdout:flush()
        os.execute("kill -KILL " .. mp.getpid())
      ]])
      local out = H.run({ script }, nil, { CORRAL_START_METHOD = H.method })
      local dpid = assert(tonumber(out:match("(%d+)")))
      local gone = H.wait_until(function()
        local st = H.ps("stat=", dpid)
        return st == "" or st:match("^Z") ~= nil
      end, 10)
      assert.truthy(gone)
    end)

    it("forbids a daemon process to have children", function()
      local p = run_to_end{ daemon = true, target = function()
        local ok, err = pcall(function() mp.Process{ target = function() end }:start() end)
        os.exit((not ok and mp.iserror(err, "StateError")) and 9 or 1)
      end }
      assert.are.equal(9, p.exitcode)
    end)
  end)

  describe("the Process class", function()
    it("can be extended with init and run", function()
      local Worker = mp.Process:extend()
      function Worker:init(base, extra)
        self.base = base
        self.extra = extra
      end
      function Worker:run()
        os.exit(self.base + self.extra.n)
      end
      local w = Worker(40, { n = 2 })
      assert.matches("^Process%-%d+$", w.name)
      w:start()
      assert.is_true(w:join(30))
      assert.are.equal(42, w.exitcode)
    end)

    it("passes closures with table, function and number upvalues", function()
      local t = { 10, 20, k = { 3 } }
      local function f(x) return x * 2 end
      local n = 5
      local p = run_to_end{ target = function() os.exit(t[1] + t[2] + t.k[1] + f(n)) end }
      assert.are.equal(43, p.exitcode)
    end)

    it("passes args with holes when args.n is given", function()
      local p = run_to_end{ target = function(a, b, c) os.exit((a == 1 and b == nil and c == 3) and 5 or 6) end,
                            args = { 1, nil, 3, n = 3 } }
      assert.are.equal(5, p.exitcode)
    end)

    it("has pid, name, daemon and a readable tostring", function()
      local p = mp.Process{ name = "named", target = function() end }
      assert.are.equal("named", p.name)
      assert.is_false(p.daemon)
      assert.is_nil(p.pid)
      assert.matches("initial", tostring(p))
      p:start()
      assert.is_number(p.pid)
      p:join()
      assert.matches("named", tostring(p))
      assert.matches("exitcode=0", tostring(p))
    end)
  end)

  describe("process-wide functions", function()
    it("lists active children and reaps the finished ones", function()
      local a = started{ target = function() mp.sleep(60) end }
      local b = started{ target = function() end }
      assert.is_true(b:join(30))
      local act = mp.active_children()
      assert.are.equal(1, #act)
      assert.are.equal(a, act[1])
      a:kill()
      a:join()
      assert.are.same({}, mp.active_children())
    end)

    it("gives pids, cpu count, monotonic time and fractional sleep", function()
      assert.are.equal(mp.getpid(), mp.current_process().pid)
      assert.is_true(mp.cpu_count() >= 1)
      local t0 = mp.time()
      mp.sleep(0.01)
      assert.is_true(mp.time() > t0)
      assert.is_true(mp.iserror(select(2, pcall(mp.sleep, -1)), "ValueError"))
      local p = run_to_end{ target = function(ppid) os.exit(mp.getppid() == ppid and 0 or 1) end,
                            args = { mp.getpid() } }
      assert.are.equal(0, p.exitcode)
    end)

    it("is_alive: the current process is alive, and a child's parent while it runs", function()
      assert.is_true(mp.current_process():is_alive())
      local q = mp.Queue()
      local p = run_to_end{ target = function(out)
        out:put({ mp.current_process():is_alive(), mp.parent_process():is_alive() })
      end, args = { q } }
      assert.are.equal(0, p.exitcode)
      assert.are.same({ true, true }, q:get(10))
    end)

    it("a child's default start method is the one that started it", function()
      for _, m in ipairs{ "fork", "spawn" } do
        local q = mp.Queue()
        local p = mp.get_context(m).Process{ target = function(out)
          local g = mp.Process{ target = function() end }
          g:start(); g:join()
          out:put({ mp.get_start_method(), g._start_method })
        end, args = { q } }
        p:start()
        assert.is_true(p:join(30))
        assert.are.same({ m, m }, q:get(10))
      end
    end)

    it("sets and reads the start method, and makes contexts", function()
      local was = mp.get_start_method()
      mp.set_start_method("spawn")
      assert.are.equal("spawn", mp.get_start_method())
      mp.set_start_method(was)
      local ok, err = pcall(mp.set_start_method, "forkserver")
      assert.is_false(ok)
      assert.is_true(mp.iserror(err, "ValueError"))
      for _, m in ipairs{ "fork", "spawn" } do
        local ctx = mp.get_context(m)
        assert.are.equal(m, ctx.get_start_method())
        local p = ctx.Process{ target = function() os.exit(4) end }
        p:start()
        p:join()
        assert.are.equal(4, p.exitcode)
        assert.are.equal(m, p._start_method)
      end
      assert.is_true(mp.iserror(select(2, pcall(mp.get_context, "nope")), "ValueError"))
    end)
  end)

  describe("error objects", function()
    it("have kind, message and a readable tostring", function()
      local ok, err = pcall(mp.set_start_method, 12)
      assert.is_false(ok)
      assert.are.equal("ValueError", err.kind)
      assert.is_string(err.message)
      assert.matches("ValueError: unknown start method", tostring(err))
      assert.is_true(mp.iserror(err))
      assert.is_true(mp.iserror(err, "ValueError"))
      assert.is_false(mp.iserror(err, "Timeout"))
      assert.is_false(mp.iserror("ValueError"))
      assert.is_false(mp.iserror({ kind = "ValueError" }))
    end)
  end)
end)
