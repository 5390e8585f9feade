-- luarocks make rockspecs/corral-scm-1.rockspec   (in a checkout)
rockspec_format = "3.0"
package = "corral"
version = "scm-1"
source = {
  -- `luarocks make` builds the checkout it runs in and never fetches this;
  -- the project has no public repository address yet
  url = "git+https://example.invalid/corral.git",
}
description = {
  summary = "Process orchestration for Lua 5.4: processes, queues, locks, shared memory, pools",
  detailed = [[
Python's multiprocessing for Lua, in C on libuv: real OS processes, queues,
pipes, locks, semaphores, events, shared Values and Arrays, a Manager and
Pools. Closures travel between processes; a killed worker never hangs a pool.
]],
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  LIBUV = { header = "uv.h" },
}
build = {
  type = "cmake",
  variables = {
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    CMAKE_BUILD_TYPE = "Release",
    -- luarocks deploys lib/ to its module directory and bin/ to its bin
    CORRAL_LUA_CMOD_DIR = "lib",
    CORRAL_LIB_DIR = "libcorral",
    CORRAL_TESTS = "OFF",
  },
}
