#!/bin/sh
# Configures and builds corral into $BUILD (default build/).
#   tools/build.sh [cmake options...]
set -e
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
sh tools/deps.sh
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
