/* PLACEHOLDER: replaced by the real CLI. Runs a script file or a spawn child. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include "corral_lua.h"
int main(int argc, char **argv) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "corral", luaopen_corral, 0);
  lua_pop(L, 1);
  if (crL_is_spawn_child()) return crL_spawn_child_run(L);
  if (argc > 2 && argv[1][0] == '-' && argv[1][1] == 'e') {
    if (luaL_dostring(L, argv[2])) { fprintf(stderr, "%s\n", luaL_tolstring(L, -1, NULL)); return 1; }
  } else if (argc > 1 && luaL_dofile(L, argv[1])) { fprintf(stderr, "%s\n", luaL_tolstring(L, -1, NULL)); return 1; }
  cr_engine_finish(cr_engine_default());
  lua_close(L);
  return 0;
}
