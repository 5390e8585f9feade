#!/bin/bash
# Checks corral as users get it, everything in a temporary directory that
# is removed at the end; prints TAP (tools/test.sh's "install" stage).
#   1. `cmake --install $BUILD` into a DESTDIR puts the module where Debian's
#      stock lua5.4 looks (under the prefix), the executable, libcorral, the
#      headers, corral.pc and the man page;
#   2. stock lua5.4, in an empty environment and another directory,
#      requires corral, starts a spawned process (which finds the
#      installed executable by itself) and pools under both methods;
#   3. examples/embed/host.c, as installed, builds out of tree against the
#      installed files with pkg-config and runs under both start methods:
#      results and callbacks (a pool's, a pipeline's) arrive while it only
#      runs uv_run, its timer kept ticking while they worked, uv_loop_close
#      returned 0;
#   4. the same host built with AddressSanitizer reports no leak;
#   5. `luarocks make` (offline) installs into a temporary tree, and that
#      module works with spawn too;
#   6. the uninstall target removes what the install put.
#   tools/install_check.sh            uses build/ (built already)
set -u
cd "$(dirname "$0")/.."
SRC=$PWD
BUILD=${BUILD:-build}
T=$(mktemp -d /tmp/corral-install.XXXXXX)
trap 'rm -rf "$T"' EXIT
PREFIX=/usr/local
D=$T/root$PREFIX
n=0
nfail=0

# check DESCRIPTION COMMAND...: one test; the end of a failure's output.
check() {
  local desc=$1
  shift
  n=$((n + 1))
  if "$@" >"$T/out" 2>&1; then
    echo "ok $n - $desc"
  else
    nfail=$((nfail + 1))
    echo "not ok $n - $desc"
    tail -25 "$T/out" | sed 's/^/# /'
  fi
}

clean_env() { env -i PATH=/usr/bin:/bin HOME="$T" "$@"; }

installed() {
  DESTDIR=$T/root cmake --install "$BUILD" >/dev/null || return 1
  local f
  for f in lib/lua/5.4/corral.so bin/corral lib/libcorral.a include/corral.h include/corral/embed.h \
           include/corral/watch.h lib/pkgconfig/corral.pc share/man/man1/corral.1 share/doc/corral/api.md \
           share/doc/corral/embedding.md share/doc/corral/examples/embed/host.c; do
    [ -e "$D/$f" ] || { echo "missing: $PREFIX/$f"; return 1; }
  done
  # where stock lua5.4 looks, once the DESTDIR is the root
  lua5.4 -e 'print(package.cpath)' | tr ';' '\n' | grep -qx "$PREFIX/lib/lua/5.4/?.so" ||
    { echo "$PREFIX/lib/lua/5.4 is not in lua5.4's package.cpath"; return 1; }
  man -l "$D/share/man/man1/corral.1" >/dev/null 2>&1 || [ ! -x /usr/bin/man ] || return 1
}

cat >"$T/stock.lua" <<'EOF'
local mp = require "corral"
for _, method in ipairs{ "fork", "spawn" } do
  local ctx = mp.get_context(method)
  local q = ctx.Queue()
  local p = ctx.Process{ target = function(qq) qq:put("child " .. mp.getpid()) end, args = { q } }
  p:start()
  assert(q:get(30), "no message from the " .. method .. " child")
  assert(p:join(30) and p.exitcode == 0, method .. " child failed")
  local pool <close> = ctx.Pool(2)
  local r = pool:map(function(x) return x * x end, { 1, 2, 3 })
  assert(table.concat(r, " ") == "1 4 9", method .. " pool")
end
print("stock lua5.4: ok")
EOF

stock_lua() {
  (cd / && clean_env LUA_CPATH="$1/?.so" lua5.4 "$T/stock.lua")
}

build_host() { # $1: output, then extra cflags
  local out=$1
  shift
  local pc="env PKG_CONFIG_PATH=$D/lib/pkgconfig pkg-config"
  (cd "$T" && cc -Wall -Wextra -Werror "$@" -o "$out" "$D/share/doc/corral/examples/embed/host.c" \
    $($pc --cflags corral) -DCORRAL_WORKER="\"$($pc --variable=worker corral)\"" $($pc --libs corral))
}

run_host() { # $1: executable, $2: start method
  (cd "$T" && clean_env CORRAL_START_METHOD="$2" ASAN_OPTIONS=detect_leaks=1 timeout 120 "$1") >"$T/host.out" 2>&1
  local rc=$?
  cat "$T/host.out"
  [ "$rc" -eq 0 ] || { echo "exit status $rc"; return 1; }
  grep -q "^map: 8 results" "$T/host.out" || return 1
  grep -q "^pipeline: 5 results of 12 items" "$T/host.out" || return 1
  [ "$(grep -c '^answer: lua says ' "$T/host.out")" -eq 3 ] || return 1
  grep -q "^uv_loop_close: 0$" "$T/host.out" || return 1
  grep -Eq "^timer: [0-9]+ ticks, [1-9][0-9]* while the pool worked, [1-9][0-9]* while the pipeline worked" \
    "$T/host.out" || return 1
  ! grep -q "LeakSanitizer\|AddressSanitizer" "$T/host.out"
}

rocks() {
  mkdir -p "$T/src"
  (cd "$SRC" && tar --exclude='./build*' --exclude=./.git -cf - .) | tar -xf - -C "$T/src" || return 1
  (cd "$T/src" && luarocks --tree "$T/rocks" --lua-version 5.4 make rockspecs/corral-scm-1.rockspec) || return 1
  stock_lua "$T/rocks/lib/lua/5.4"
}

uninstalled() {
  DESTDIR=$T/root cmake --build "$BUILD" --target uninstall >/dev/null || return 1
  rm -f "$BUILD/install_manifest.txt"
  local left
  left=$(find "$T/root" -type f | head -5)
  [ -z "$left" ] || { echo "left after uninstall: $left"; return 1; }
}

check "cmake --install into a DESTDIR puts every file in place" installed
check "stock lua5.4 in an empty environment: require, spawn, pools" stock_lua "$D/lib/lua/5.4"
check "the example host builds against the installed files with pkg-config" build_host host
for m in fork spawn; do
  check "the example host ($m): callbacks from uv_run, the timer ticked, uv_loop_close 0" run_host ./host $m
done
if build_host host_asan -g -fsanitize=address -fno-omit-frame-pointer >/dev/null 2>&1; then
  check "the example host under AddressSanitizer: no leak" run_host ./host_asan fork
else # tools/deps.sh installs gcc, whose ASan runtime this needs: not a skip
  check "the example host under AddressSanitizer builds against the installed files" build_host host_asan \
    -g -fsanitize=address -fno-omit-frame-pointer
fi
# tools/deps.sh installs luarocks: without it this fails, it is not skipped
check "luarocks make into a temporary tree; that module spawns and pools" rocks
check "the uninstall target removes the installed files" uninstalled
echo "1..$n"
[ "$nfail" -eq 0 ]
