#!/bin/bash
# Builds corral and runs every test: the C unit tests (ctest), the busted
# specs under both start methods (fork, spawn), and a bounded fuzz run of
# the value decoder. Ends with one line "N passed, N failed".
#   tools/test.sh            everything
#   SANITIZE=1 tools/test.sh the same, built with ASan and UBSan
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
export BUILD=${BUILD:-build}
opts=""
if [ "${SANITIZE:-0}" = 1 ]; then
  BUILD=build-sanitize
  opts="-DCORRAL_SANITIZE=ON"
fi
TESTING=1 sh tools/build.sh $opts || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT

# --- C unit tests
ctest --test-dir "$BUILD" --output-on-failure -j2 >"$LOG/ctest" 2>&1
grep -E "tests passed|Failed|\*\*\*" "$LOG/ctest" | tail -15
cp_=$(grep -cE "^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed" "$LOG/ctest")
cf_=$(grep -cE "^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*(Failed|Timeout|Exception|Not Run)" "$LOG/ctest")
echo "ctest: $cp_ passed, $cf_ failed"
passed=$((passed + cp_)); failed=$((failed + cf_))

# --- busted specs, once per start method
export CORRAL_BUILD_DIR=$BUILD
preload=""
if [ "${SANITIZE:-0}" = 1 ]; then
  preload="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
  # handle_segv=0: a spec kills a worker with SIGSEGV on purpose and expects -11
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:handle_segv=0
fi
for method in fork spawn; do
  CORRAL_START_METHOD=$method LD_PRELOAD=$preload busted -o TAP spec >"$LOG/busted-$method" 2>&1
  bp=$(grep -cE "^ok [0-9]+" "$LOG/busted-$method")
  bf=$(grep -cE "^not ok [0-9]+" "$LOG/busted-$method")
  if [ "$bp" -eq 0 ] && [ "$bf" -eq 0 ]; then bf=1; fi # busted itself failed
  grep -A12 -E "^not ok [0-9]+" "$LOG/busted-$method" | head -120
  echo "busted ($method): $bp passed, $bf failed"
  passed=$((passed + bp)); failed=$((failed + bf))
done

# --- bounded fuzz run of the decoder (clang + libFuzzer)
if [ "${SANITIZE:-0}" != 1 ] && command -v clang >/dev/null && [ -f fuzz/CMakeLists.txt ]; then
  if CC=clang cmake -S . -B build-fuzz -DCORRAL_FUZZ=ON >/dev/null 2>&1 &&
     cmake --build build-fuzz -j"$(nproc)" >/dev/null 2>&1; then
    ctest --test-dir build-fuzz -R fuzz --output-on-failure >"$LOG/fuzz" 2>&1
    fp=$(grep -cE "Test +#[0-9]+: .* Passed" "$LOG/fuzz")
    ff=$(grep -cE "Test +#[0-9]+: .*(Failed|Timeout|Exception)" "$LOG/fuzz")
    tail -5 "$LOG/fuzz"
    echo "fuzz: $fp passed, $ff failed"
    passed=$((passed + fp)); failed=$((failed + ff))
  else
    echo "fuzz: build failed"; failed=$((failed + 1))
  fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
