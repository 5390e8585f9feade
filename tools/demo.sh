#!/bin/sh
# Builds corral and runs the showcase pipeline.
set -e
cd "$(dirname "$0")/.."
sh tools/build.sh
exec build/corral scripts/showcase.lua "$@"
