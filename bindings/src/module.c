/* corral bindings: luaopen_corral assembles the module.
 *
 * The C parts (parts.h) fill a core table; the embedded Lua companion
 * modules are put in package.preload, and "corral" (bindings/lua/corral.lua)
 * is run with the core table to build the public module. */
#include <string.h>

#include "corral_lua.h"
#include "embedded.h"

static cr_engine_t *engine;

cr_engine_t *crL_engine(lua_State *L) {
  cr_engine_t *e = cr_engine_default();
  if (e) return e;
  int rc;
  if (crL_is_spawn_child()) /* the arena our parent handed us */
    rc = cr_engine_attach(&engine, NULL, CR_SPAWN_ARENA_FD);
  else
    rc = cr_engine_open(&engine, NULL, 0);
  if (rc < 0) crL_error_code(L, rc, "cannot open the corral engine");
  return engine;
}

void crL_setfuncs(lua_State *L, const luaL_Reg *l) {
  for (; l->name; l++) {
    lua_pushcfunction(L, l->func);
    lua_setfield(L, -2, l->name);
  }
}

static int load_embedded(lua_State *L) {
  const crL_embedded_t *m = lua_touserdata(L, lua_upvalueindex(1));
  if (luaL_loadbufferx(L, m->src, m->len, m->chunkname, "t") != LUA_OK) return lua_error(L);
  lua_pushvalue(L, 1); /* module name */
  lua_pushvalue(L, lua_upvalueindex(2)); /* core */
  lua_call(L, 2, 1);
  return 1;
}

int luaopen_corral(lua_State *L) {
  lua_newtable(L); /* core */
  int core = lua_gettop(L);
#define CRL_PART(name) crL_open_##name(L);
#include "parts.h"
#undef CRL_PART
  lua_settop(L, core);
  /* package.preload["corral.NAME"] for the companions. */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  const crL_embedded_t *main = NULL;
  for (const crL_embedded_t *m = crL_embedded; m->modname; m++) {
    if (strcmp(m->modname, "corral") == 0) {
      main = m;
      continue;
    }
    lua_pushlightuserdata(L, (void *)m);
    lua_pushvalue(L, core);
    lua_pushcclosure(L, load_embedded, 2);
    lua_setfield(L, -2, m->modname);
  }
  lua_pop(L, 1);
  if (!main) return luaL_error(L, "corral: companion corral.lua missing from the build");
  lua_pushlightuserdata(L, (void *)main);
  lua_pushvalue(L, core);
  lua_pushcclosure(L, load_embedded, 2);
  lua_pushstring(L, "corral");
  lua_call(L, 1, 1);
  return 1;
}
