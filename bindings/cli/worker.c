/* corral executable: `corral worker redis://host:port/name [--workers N]`,
 * the workers of a Pool on Redis on this machine (corral.pool_redis). The
 * signing key comes from CORRAL_AUTHKEY, never from the command line,
 * where other users of the machine could read it. */
#include <lauxlib.h>

#include "cli.h"

int cli_worker(lua_State *L, int argc, char **argv) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "corral.pool_redis");
  int status = cli_docall(L, 1, 1);
  if (status != LUA_OK) return cli_report(L, status);
  lua_getfield(L, -1, "serve");
  lua_remove(L, -2);
  lua_createtable(L, argc, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return cli_report(L, cli_docall(L, 1, 0));
}
