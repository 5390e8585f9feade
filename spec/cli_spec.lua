-- The corral executable: scripts and their `arg`, -e, -l, -, the exit
-- status of errors and os.exit, --version, --help, bad options, children at
-- the end of a script, and Ctrl-C. Runs under both start methods
-- (CORRAL_START_METHOD, inherited by the executable).
local H = require "spec.helper"
local mp = H.mp

-- Whether a process has ended. Read from /proc rather than with ps, which
-- must not run under the sanitizers' LD_PRELOAD.
local ended = H.ended

-- Runs a shell command line with bash; returns its output and status.
local function bash(cmd)
  local f = io.popen("env -u LD_PRELOAD bash -c " .. H.shell_quote(cmd))
  local out = f:read("a")
  local _, _, code = f:close()
  return out, code
end

describe("corral executable (" .. H.method .. ")", function()
  after_each(function()
    H.cleanup()
    H.assert_no_children()
  end)

  describe("scripts", function()
    it("gives the script `arg` and `...` as lua does", function()
      local script = H.script([[
        print(arg[0], arg[-1], #arg, arg[1], arg[2], arg[3])
        print(select("#", ...), ...)
      ]])
      local out, err, code = H.run{ script, "one", "two words", "" }
      assert.are.equal("", err)
      assert.are.equal(0, code)
      assert.are.equal(("%s\t%s\t3\tone\ttwo words\t\n3\tone\ttwo words\t\n"):format(script, H.exe), out)
    end)

    it("puts the interpreter and its options at negative indices", function()
      local script = H.script([[print(arg[-3], arg[-2], arg[-1], arg[0], arg[1])]])
      local out, err, code = H.run{ "-e", "x = 1", script, "a" }
      assert.are.equal(0, code, err)
      assert.are.equal(("%s\t-e\tx = 1\t%s\ta\n"):format(H.exe, script), out)
    end)

    it("opens the module as the global corral, the same as require", function()
      local out, err, code = H.run{ "-e", [[
        print(type(corral), corral == require "corral", package.loaded.corral == corral,
              type(corral.Process), corral.get_start_method())]] }
      assert.are.equal(0, code, err)
      assert.are.equal("table\ttrue\ttrue\ttable\t" .. H.method .. "\n", out)
    end)

    it("runs -e chunks in order, and a script after them", function()
      local script = H.script([[print("script", x)]])
      local out, err, code = H.run{ "-e", "x = 1", "-e", "x = x + 1; print('e', x)", script }
      assert.are.equal(0, code, err)
      assert.are.equal("e\t2\nscript\t2\n", out)
    end)

    it("requires -l modules into globals, -l g=mod under another name", function()
      local dir = H.module("clispecmod", "return { answer = 42 }\n")
      local env = { LUA_PATH = dir .. "/?.lua;;" }
      local out, err, code = H.run({ "-l", "clispecmod", "-e", "print(clispecmod.answer)",
                                     "-lm=clispecmod", "-e", "print(m.answer, m == clispecmod)" }, nil, env)
      assert.are.equal(0, code, err)
      assert.are.equal("42\n42\ttrue\n", out)
    end)

    it("reads the script from stdin for -", function()
      local out, err, code = H.run({ "-", "a", "b" }, [[print("stdin", arg[0], ...)]])
      assert.are.equal(0, code, err)
      assert.are.equal("stdin\t-\ta\tb\n", out)
    end)

    it("runs stdin as a chunk when it is not a terminal and nothing else is given", function()
      local out, err, code = H.run({}, "local x = 20\nprint(x + 22)\n")
      assert.are.equal(0, code, err)
      assert.are.equal("42\n", out)
    end)

    it("opens the REPL after the script with -i, even on a pipe", function()
      local script = H.script([[x = 41]])
      local out, err, code = H.run({ "-i", script }, "=x + 1\n")
      assert.are.equal(0, code, err)
      assert.matches("^corral %S+", out)
      assert.matches("\n> 42\n", out, 1, true)
    end)
  end)

  describe("errors", function()
    it("prints the message with file:line and a traceback, status 1", function()
      local script = H.script("local x = 1\nlocal function f() error('boom') end\nf()\nprint('not reached')\n")
      local out, err, code = H.run{ script }
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.are.equal(("corral: %s:2: boom\n"):format(script), err:match("^[^\n]*\n"))
      assert.matches("stack traceback:", err, 1, true)
      assert.matches(script .. ":3: in main chunk", err, 1, true)
    end)

    it("prints an error object through its __tostring, with file:line", function()
      local script = H.script("local p = corral.Process{ target = print }\n\np:join()\n")
      local out, err, code = H.run{ script }
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.matches("^corral: " .. script:gsub("%p", "%%%0") .. ":3: StateError: ", err)
      assert.matches("stack traceback:", err, 1, true)
    end)

    it("prints a user error object through its __tostring", function()
      local out, err, code = H.run{ "-e", "error(setmetatable({}, {__tostring = function() return 'mine' end}))" }
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.matches("^corral: mine\nstack traceback:", err)
    end)

    it("reports a syntax error with file:line, status 1, running nothing", function()
      local script = H.script("print('not run')\nlocal = 3\n")
      local out, err, code = H.run{ script }
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.matches("^corral: " .. script:gsub("%p", "%%%0") .. ":2: .*near", err)
    end)

    it("stops at the first failing -e", function()
      local out, err, code = H.run{ "-e", "print(1)", "-e", "error('second')", "-e", "print(3)" }
      assert.are.equal(1, code)
      assert.are.equal("1\n", out)
      assert.matches("^corral: %(command line%):1: second", err)
    end)

    it("reports a missing script", function()
      local out, err, code = H.run{ "/nonexistent/script.lua" }
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.matches("^corral: cannot open /nonexistent/script.lua", err)
    end)
  end)

  describe("os.exit", function()
    it("exits with the given status", function()
      local _, _, code = H.run{ "-e", "os.exit(3)" }
      assert.are.equal(3, code)
    end)

    it("gives 0 for true and 1 for false, as in Lua", function()
      local _, _, t = H.run{ "-e", "os.exit(true)" }
      local _, _, f = H.run{ "-e", "os.exit(false)" }
      assert.are.same({ 0, 1 }, { t, f })
    end)

    it("still joins non-daemon children", function()
      local out, err, code = H.run{ "-e", [[
        corral.Process{ target = function() corral.sleep(0.1); print("child done") end }:start()
        os.exit(4)]] }
      assert.are.equal(4, code, err)
      assert.are.equal("child done\n", out)
    end)
  end)

  describe("options", function()
    it("prints the corral and Lua versions for --version and -v", function()
      for _, opt in ipairs{ "--version", "-v" } do
        local out, err, code = H.run{ opt }
        assert.are.equal(0, code)
        assert.are.equal("", err)
        assert.matches("^corral " .. mp.VERSION:gsub("%p", "%%%0") .. " %(Lua 5%.4[%.%d]*", out)
      end
    end)

    it("lists every option for --help and -h", function()
      for _, opt in ipairs{ "--help", "-h" } do
        local out, err, code = H.run{ opt }
        assert.are.equal(0, code)
        assert.are.equal("", err)
        assert.matches("^usage: corral %[options%] %[script %[args%]%]", out)
        for _, o in ipairs{ "-e stat", "-i ", "-l mod", "-l g=mod", "-v, --version", "-W ",
                            "-h, --help", "--  ", "-  " } do
          assert.matches("\n  " .. o, out, 1, true)
        end
      end
    end)

    it("rejects an unknown option with a clear error and status 1", function()
      for _, opt in ipairs{ "-x", "--bogus", "-vx" } do
        local out, err, code = H.run{ opt }
        assert.are.equal(1, code)
        assert.are.equal("", out)
        assert.matches("^corral: unrecognized option '" .. opt:gsub("%p", "%%%0") .. "'\nusage: corral", err)
      end
    end)

    it("rejects -e and -l without their argument", function()
      for _, opt in ipairs{ "-e", "-l" } do
        local out, err, code = H.run{ opt }
        assert.are.equal(1, code)
        assert.are.equal("", out)
        assert.matches("^corral: '" .. opt:gsub("%p", "%%%0") .. "' needs an argument\nusage: corral", err)
      end
    end)

    it("stops handling options at --", function()
      local script = H.script([[print(...)]])
      local out, err, code = H.run{ "--", script, "-x" }
      assert.are.equal(0, code, err)
      assert.are.equal("-x\n", out)
    end)
  end)

  describe("children at the end of a script", function()
    it("joins non-daemon children and terminates daemon ones", function()
      local script = H.script([[
        local mp = corral
        local d = mp.Process{ daemon = true, target = function()
          mp.sleep(60)
          print("daemon not terminated")
        end }
        local n = mp.Process{ target = function()
          mp.sleep(0.2)
          print("non-daemon done")
        end }
        d:start()
        n:start()
        print("pids " .. d.pid .. " " .. n.pid)
      ]])
      local out, err, code = H.run{ script }
      assert.are.equal(0, code, err)
      local dpid, npid = out:match("^pids (%d+) (%d+)\n")
      assert.truthy(dpid, out)
      assert.are.equal(("pids %s %s\nnon-daemon done\n"):format(dpid, npid), out)
      assert.truthy(ended(dpid), "daemon child left: " .. dpid)
      assert.truthy(ended(npid), "child left: " .. npid)
    end)

    it("runs the issue's acceptance line under both start methods", function()
      local line = [[local mp=require"corral"; local p=mp.Process{target=function(a) print("hi",a) end, args={1}}; p:start(); p:join(); print(p.exitcode)]]
      for _, method in ipairs{ "fork", "spawn" } do
        local out, err, code = H.run({ "-e", line }, nil, { CORRAL_START_METHOD = method })
        assert.are.equal("", err, method)
        assert.are.equal(0, code, method)
        assert.are.equal("hi\t1\n0\n", out, method)
      end
    end)
  end)

  describe("Ctrl-C", function()
    -- The executable runs in a process group of its own (setsid), like a
    -- terminal's foreground job; it says when it is ready, then SIGINT
    -- goes to its pid only.
    local function interrupt(code)
      local script = H.script(code)
      local cmd = ("exec 3< <(setsid -w %s %s 2>&1; echo \"status $?\"); read -u 3 tag pid child; "
        .. "kill -INT $pid; cat <&3; echo \"child $child\""):format(H.shell_quote(H.exe), H.shell_quote(script))
      local out = bash(cmd)
      return out, tonumber(out:match("child (%d+)"))
    end

    it("stops running Lua code with the Interrupted error: one line, status 130", function()
      local script = H.script([[
        print("ready " .. corral.getpid() .. " 0")
        io.stdout:flush()
        while true do end
      ]])
      -- (the SIGINT may land before the loop, in the flush: any of its lines)
      local cmd = ("exec 3< <(setsid -w %s %s 2>&1; echo \"status $?\"); read -u 3 tag pid child; "
        .. "kill -INT $pid; cat <&3"):format(H.shell_quote(H.exe), H.shell_quote(script))
      local out = bash(cmd)
      assert.matches("^corral: " .. script:gsub("%p", "%%%0") .. ":%d: Interrupted: interrupted by a signal\nstatus 130\n$",
        out)
    end)

    it("raises Ctrl-C in running Lua code as the catchable Interrupted error, as the library does", function()
      local out = interrupt([[
        local ok, err = pcall(function()
          print("ready " .. corral.getpid() .. " 0")
          io.stdout:flush()
          while true do end
        end)
        print("caught " .. tostring(corral.iserror(err, "Interrupted")))
        print("went on")
      ]])
      assert.matches("^caught true\nwent on\nstatus 0\n", out)
    end)

    it("interrupts a join; daemon children are terminated", function()
      local out, child = interrupt([[
        local p = corral.Process{ daemon = true, target = function() corral.sleep(60) end }
        p:start()
        print("ready " .. corral.getpid() .. " " .. p.pid)
        io.stdout:flush()
        p:join()
        print("not reached")
      ]])
      -- (the SIGINT may come before the join waits: then the hook's Interrupted)
      assert.matches("^corral: [^\n]*Interrupted: [^\n]*interrupted by a signal\nstatus 130\n", out)
      assert.not_matches("not reached", out, 1, true)
      assert.truthy(child, out)
      assert.truthy(ended(child), "daemon child left: " .. tostring(child))
    end)
  end)
end)
