#!/bin/sh
# Installs the Debian packages corral needs, only those that are missing.
#   tools/deps.sh [extra-package...]
set -e
PKGS="gcc make cmake pkg-config lua5.4 liblua5.4-dev libuv1-dev lua-busted lua-socket luarocks libreadline-dev tmux procps python3 clang libclang-rt-14-dev libhiredis-dev libssl-dev redis-server"
missing=""
for p in $PKGS "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "corral: installing missing packages:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
