-- Ctrl-C, the library side: a SIGINT that a corral wait turns into an
-- Interrupted error is that wait's alone (the host's own handler, lua.c's
-- hook, does not fire on top of it, so code that catches Interrupted goes
-- on), the host's handling outside corral's waits is unchanged, and a
-- forked child running pure Lua stops on the first Ctrl-C. Each script
-- runs in a process group of its own (setsid), under stock lua5.4 and the
-- corral executable, with the spec's start method.
local H = require "spec.helper"

local cpath = H.build .. "/?.so;;"
local HOSTS = { { "lua5.4", "lua5.4" }, { "corral", H.exe } }

-- Starts `exe script` and runs `driver`, a bash script that reads the
-- script's output on fd 3 with the helpers below; $pgid is the script's
-- process group, from its first line ("pid N"). Returns everything the
-- driver printed. The group is killed at the end, whatever happened.
local function drive(exe, script, driver)
  local cmd = ([[
exec 3< <(CORRAL_START_METHOD=%s LUA_CPATH=%s LD_PRELOAD=%s setsid %s %s 2>&1; echo "status $?")
# Reads lines from the script until one starts with $1; sets $line.
expect() {
  while IFS= read -r -t 30 -u 3 line; do
    echo "$line"
    case $line in "$1"*) return 0 ;; esac
  done
  echo "no line '$1'"; return 1
}
# Waits (10 s at most) until process $1 sleeps in the kernel: in a
# corral wait, once it has printed that it is about to enter one.
sleeping() {
  for _ in $(seq 2000); do
    [ "$(sed 's/.*) //' /proc/$1/stat 2>/dev/null | cut -d' ' -f1)" = S ] && return 0
    sleep 0.005
  done
  echo "process $1 never slept"; return 1
}
rest() { timeout 20 cat <&3; }
# Whatever happened: what is left of the group is named, then killed.
finish() {
  [ -n "$pgid" ] || return
  ps -o pid= -g "$pgid" >/dev/null 2>&1 && echo "left: $(ps -o pid=,args= -g "$pgid" | tr '\n' ' ')"
  kill -KILL -- -"$pgid" 2>/dev/null
}
trap finish EXIT
pgid=
expect "pid " && pgid=${line#pid }
[ -n "$pgid" ] || exit 0
%s
]]):format(H.method, H.shell_quote(cpath), H.shell_quote(os.getenv("LD_PRELOAD") or ""),
    H.shell_quote(exe), H.shell_quote(script), driver)
  -- The shell and ps run without a preloaded sanitizer runtime (ps hangs
  -- under one); the script keeps it.
  local f = io.popen("env -u LD_PRELOAD bash -c " .. H.shell_quote(cmd))
  local out = f:read("a")
  f:close()
  return out
end

describe("Ctrl-C (" .. H.method .. ")", function()
  after_each(function()
    H.cleanup()
    H.assert_no_children()
  end)

  for _, host in ipairs(HOSTS) do
    local name, exe = host[1], host[2]

    it("caught around q:get under " .. name .. ", lets the cleanup run; the host's own Ctrl-C is intact", function()
      local script = H.script([[
        local mp = require "corral"
        print("pid " .. mp.getpid()); io.stdout:flush()
        local q = mp.Queue()
        print("ready"); io.stdout:flush()
        local ok, err = pcall(q.get, q)
        print("caught " .. tostring(mp.iserror(err, "Interrupted")) .. " " .. tostring(err))
        print("cleanup ran"); io.stdout:flush()
        print("looping"); io.stdout:flush()
        while true do end
      ]])
      local out = drive(exe, script, [[
        expect "ready" && sleeping "$pgid" || exit 0
        kill -INT "$pgid"
        expect "looping" || { rest; exit 0; }
        kill -INT "$pgid"
        rest
      ]])
      assert.matches("\ncaught true [^\n]*Interrupted", out)
      assert.matches("\ncleanup ran\n", out)
      -- Outside corral's waits SIGINT is the host's: lua5.4's "interrupted!";
      -- the corral executable raises Interrupted there too, and an uncaught
      -- one ends it with status 130.
      if name == "lua5.4" then
        assert.matches("\nlooping\n[^\n]*interrupted!", out)
        assert.matches("\nstatus 1\n", out)
      else
        assert.matches("\nlooping\ncorral: [^\n]*: Interrupted: interrupted by a signal\nstatus 130\n", out)
      end
      assert.not_matches("left:", out)
    end)

    it("stops a child running pure Lua on the first one, under " .. name, function()
      local script = H.script([[
        local mp = require "corral"
        print("pid " .. mp.getpid()); io.stdout:flush()
        local running = mp.Event()
        local p = mp.Process{ target = function(ev)
          ev:set()
          local n = 0
          while true do n = n + 1 end
        end, args = { running } }
        p:start()
        assert(running:wait(30))
        print("ready"); io.stdout:flush()
        -- A wait that nothing else ends (a join could see the child's end first).
        local q = mp.Queue()
        local ok, err = pcall(q.get, q, 60)
        print("caught " .. tostring(mp.iserror(err, "Interrupted")) .. " " .. tostring(err))
        print("joined " .. tostring(p:join(30)) .. " exitcode " .. tostring(p.exitcode))
      ]])
      local out = drive(exe, script, [[
        expect "ready" && sleeping "$pgid" || exit 0
        kill -INT -- -"$pgid"
        rest
      ]])
      assert.matches("\ncaught true ", out)
      assert.matches("interrupted!", out) -- the child's traceback
      assert.matches("\njoined true exitcode 1\n", out)
      assert.matches("\nstatus 0\n", out)
      assert.not_matches("left:", out)
    end)
  end
end)
