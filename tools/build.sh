#!/bin/sh
# Configures and builds corral into $BUILD (default build/).
#   tools/build.sh [cmake options...]
#   TESTING=1 tools/build.sh   with the test hooks (-DCORRAL_TESTING=ON), as
#                              tools/test.sh and the specs need; TESTING=0
#                              without; unset, $BUILD keeps what it had
#                              (none, the first time)
set -e
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
sh tools/deps.sh
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} \
  ${TESTING:+"-DCORRAL_TESTING=$TESTING"} "$@" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
