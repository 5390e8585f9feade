#!/bin/sh
# Builds corral and installs it under PREFIX (default /usr/local), DESTDIR
# honoured: the Lua module where stock lua5.4 finds it, the corral
# executable, libcorral, the headers, corral.pc, the man page and the docs.
#   tools/install.sh                  build/ then /usr/local
#   PREFIX=$HOME/.local tools/install.sh
#   DESTDIR=/tmp/stage tools/install.sh
# Uninstall: cmake --build build --target uninstall, with the same DESTDIR
# if any (the files of the last
# install, from build/install_manifest.txt).
set -e
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PREFIX=${PREFIX:-/usr/local}
BUILD=$BUILD sh tools/build.sh -DCMAKE_INSTALL_PREFIX="$PREFIX"
cmake --install "$BUILD" >/dev/null
echo "corral: installed under ${DESTDIR:-}$PREFIX"
