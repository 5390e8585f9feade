#!/bin/bash
# Builds corral and runs every test: the C unit tests (ctest), the busted
# specs under both start methods (fork, spawn), the install check, the
# chaos run (random SIGKILLs while work flows, tools/chaos.lua) under both
# methods, and a bounded fuzz run of the value decoder.
# Each stage says "== <stage>" as it starts.
# Ends with one line "N passed, N failed", and exits non-zero when anything
# failed.
#   tools/test.sh            everything
#   SANITIZE=1 tools/test.sh the same, built with ASan and UBSan
#   tools/test.sh SPEC...    busted runs only these spec files or directories
#   STAGES="ctest busted install chaos fuzz" (the default; with
#                            SANITIZE=1, "ctest busted": the sanitizers
#                            slow every process several times over, and
#                            the install and fuzz stages build their own)
#                            names the stages to run (install:
#                            tools/install_check.sh); the build always
#                            runs, a stage left out says so
#   PARALLEL=0               the fork and spawn runs of busted and of the
#                            chaos run one after the other, not side by
#                            side (the default)
#   CHAOS_SECONDS=20 (the default here; tools/chaos.lua alone runs 60)
#                            bounds each chaos run's time of kills (a run
#                            takes about 15 s more); CHAOS_SEED=N replays
#                            its choices
#
# A stage's count comes from what the tool itself declares, not only from
# the lines that say "ok": a stage whose tool exits non-zero without naming
# a failing test, a busted run without its TAP plan line (1..N) or with a
# count of ok / not ok lines other than the plan, and a ctest run without
# its summary or whose summary disagrees with the tests it listed, each
# count one failure more, with the reason printed.
set -u
cd "$(dirname "$0")/.."
export BUILD=${BUILD:-build}
opts=""
if [ "${SANITIZE:-0}" = 1 ]; then
  BUILD=build-sanitize
  opts="-DCORRAL_SANITIZE=ON"
fi

if [ "${SANITIZE:-0}" = 1 ]; then
  STAGES=${STAGES:-ctest busted}
else
  STAGES=${STAGES:-ctest busted install chaos fuzz}
fi
SPECS=("$@")
[ ${#SPECS[@]} -eq 0 ] && SPECS=(spec)

passed=0
failed=0
stage=""
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT
trap 'echo; echo "interrupted during: $stage"; exit 130' INT

# Whether stage $1 is to run; when not, says so.
wanted() {
  case " $STAGES " in *" $1 "*) return 0 ;; esac
  echo "== $1: skipped (not in STAGES)"
  return 1
}

# Announces stage $1.
begin() {
  stage=$1
  stage_t0=$SECONDS
  echo "== $stage"
}

# Ends the current stage with $1 passed, $2 failed, and $3 the reason for
# one failure more (empty when none).
end_stage() {
  local p=$1 f=$2 why=$3
  if [ -n "$why" ]; then
    f=$((f + 1))
    echo "$stage: FAILED: $why"
  fi
  echo "$stage: $p passed, $f failed ($((SECONDS - stage_t0)) s)"
  passed=$((passed + p)); failed=$((failed + f))
}

# Ends the current stage run by tool $1 (its output in file $2), which
# reported $3 tests passed and $4 failed, declared $5 tests in its $6
# (empty when it printed none) and exited with status $7. One failure
# more, and the end of its output, when these disagree.
check_account() {
  local tool=$1 log=$2 p=$3 f=$4 declared=$5 what=$6 rc=$7 why=""
  if [ -z "$declared" ]; then
    why="$tool printed no $what: it stopped after $((p + f)) tests (exit status $rc)"
  elif [ $((p + f)) -ne "$declared" ]; then
    why="$tool's $what says $declared tests, $((p + f)) reported passed or failed (exit status $rc)"
  elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    why="$tool exited with status $rc, no test failed"
  fi
  [ -n "$why" ] && tail -20 "$log"
  end_stage "$p" "$f" "$why"
}

# Runs ctest with arguments "$@", its output in file $LOG/$1 (the first
# argument is only the log's name), and ends the stage.
run_ctest() {
  local log=$LOG/$1; shift
  ctest --no-tests=error "$@" >"$log" 2>&1
  local rc=$?
  local p f total
  p=$(grep -cE "^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed" "$log")
  f=$(grep -cE "^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*(Failed|Timeout|Exception|Not Run)" "$log")
  total=$(sed -nE 's/.* tests? failed out of ([0-9]+).*/\1/p' "$log" | tail -1)
  grep -E "tests passed|Failed|\*\*\*" "$log" | tail -15
  check_account ctest "$log" "$p" "$f" "$total" "summary (... out of N)" "$rc"
}

# Runs busted on files or directories $4... with start method $1, its
# output in file $LOG/$2 and its exit status in $LOG/$2.rc. $3 > 0: a time
# limit in seconds, past which busted and every process it started are
# killed.
busted_run() {
  local method=$1 log=$LOG/$2 limit=$3
  shift 3
  # busted under Lua 5.4 whatever `lua` is (installing luarocks brings
  # Lua 5.1 and may make it the default interpreter)
  local cmd=(env CORRAL_START_METHOD="$method" LD_PRELOAD="$preload" lua5.4 "$(command -v busted)" -o TAP "$@")
  [ "$limit" -gt 0 ] && cmd=(timeout -s KILL "$limit" "${cmd[@]}")
  "${cmd[@]}" >"$log" 2>&1
  echo $? >"$log.rc"
}

# Ends the current stage with the counts of the busted run whose output is
# in $LOG/$1 (busted_run's), $2 its time limit.
busted_account() {
  local log=$LOG/$1 limit=$2 rc
  rc=$(cat "$log.rc" 2>/dev/null || echo 255)
  [ "$limit" -gt 0 ] && [ "$rc" -eq 137 ] && echo "$stage: killed after its time limit of $limit s"
  local p f skipped plan
  p=$(grep -cE "^ok [0-9]+" "$log")
  f=$(grep -cE "^not ok [0-9]+" "$log")
  skipped=$(grep -cE "^ok [0-9]+ - # SKIP" "$log")
  plan=$(sed -nE 's/^1\.\.([0-9]+)$/\1/p' "$log" | tail -1)
  grep -A12 -E "^not ok [0-9]+" "$log" | head -120
  [ "$skipped" -gt 0 ] && echo "$stage: $skipped of the passed are pending (SKIP)"
  check_account busted "$log" "$p" "$f" "$plan" "TAP plan (1..N)" "$rc"
}

# busted_run, then busted_account: one stage.
run_busted() {
  busted_run "$@"
  busted_account "$2" "$3"
}

begin build
if ! TESTING=1 sh tools/build.sh $opts; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

# --- C unit tests
if wanted ctest; then
  begin ctest
  run_ctest ctest --test-dir "$BUILD" --output-on-failure -j2
fi

# --- busted specs, once per start method
export CORRAL_BUILD_DIR=$BUILD
preload=""
if [ "${SANITIZE:-0}" = 1 ]; then
  preload="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
  # handle_segv=0: a spec kills a worker with SIGSEGV on purpose and expects -11;
  # quarantine_size_mb=16: freed memory ASan holds back counts in a process's
  # resident size, which specs of memory growth measure (256 MB by default)
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:handle_segv=0:quarantine_size_mb=16
fi
# Runs busted on $3... under each start method, as the stages "$1 (fork)"
# and "$1 (spawn)", with the time limit $2 (0: none). The two runs go side
# by side (PARALLEL=0: one after the other): a run spends most of its time
# waiting on its children, about one core's worth of CPU on two, so
# together they take little longer than one. A stage's time is its own
# run's.
both_methods() {
  local name=$1 limit=$2 method t0
  shift 2
  if [ "${PARALLEL:-1}" = 1 ]; then
    echo "== $name (fork) and $name (spawn), side by side"
    t0=$SECONDS
    for method in fork spawn; do
      { busted_run "$method" "$name-$method" "$limit" "$@"; echo $((SECONDS - t0)) >"$LOG/$name-$method.s"; } &
    done
    wait
    for method in fork spawn; do
      begin "$name ($method)"
      stage_t0=$((SECONDS - $(cat "$LOG/$name-$method.s" 2>/dev/null || echo 0)))
      busted_account "$name-$method" "$limit"
    done
  else
    for method in fork spawn; do
      begin "$name ($method)"
      run_busted "$method" "$name-$method" "$limit" "$@"
    done
  fi
}

if wanted busted; then
  both_methods busted 0 "${SPECS[@]}"
fi

# --- the chaos run, once per start method (its seed and counts are shown);
# a hang inside the engine, where no timeout reaches, meets the time limit
if wanted chaos; then
  export CHAOS_SECONDS=${CHAOS_SECONDS:-20}
  both_methods chaos $((2 * CHAOS_SECONDS + 120)) tools/chaos.lua
  for method in fork spawn; do grep -E "^# chaos" "$LOG/chaos-$method" | sed -n '1p;$p'; done
fi

# --- as users get it: install, stock lua5.4, the embedding example built
# with pkg-config (and under ASan), luarocks (tools/install_check.sh); the
# sanitizer build is not one to install
if [ "${SANITIZE:-0}" = 1 ]; then
  echo "== install: skipped (a sanitizer build)"
elif wanted install; then
  begin install
  bash tools/install_check.sh >"$LOG/install" 2>&1
  rc=$?
  grep -A25 -E "^not ok [0-9]+" "$LOG/install" | head -80
  check_account install "$LOG/install" "$(grep -cE "^ok [0-9]+" "$LOG/install")" \
    "$(grep -cE "^not ok [0-9]+" "$LOG/install")" "$(sed -nE 's/^1\.\.([0-9]+)$/\1/p' "$LOG/install")" \
    "TAP plan (1..N)" "$rc"
fi

# --- bounded fuzz run of the decoder (clang + libFuzzer)
if [ "${SANITIZE:-0}" = 1 ]; then
  : # the fuzz build has sanitizers of its own
elif ! command -v clang >/dev/null || [ ! -f fuzz/CMakeLists.txt ]; then
  echo "== fuzz: skipped (needs clang and fuzz/CMakeLists.txt)"
elif wanted fuzz; then
  begin fuzz
  if CC=clang cmake -S . -B build-fuzz -DCORRAL_FUZZ=ON >"$LOG/fuzz-build" 2>&1 &&
     cmake --build build-fuzz -j"$(nproc)" >>"$LOG/fuzz-build" 2>&1; then
    run_ctest fuzz --test-dir build-fuzz -R fuzz --output-on-failure
  else
    tail -20 "$LOG/fuzz-build"
    end_stage 0 0 "the fuzz build failed"
  fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
