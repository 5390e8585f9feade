/* corral bindings: handles, the userdata that name shared objects.
 *
 * A registry table maps each registered kind to its push function (a light
 * C function pointer), so the codec can rebuild a handle from (kind, off).
 * (The test object kind, which checks this on its own, is in testing.c.) */
#include <unistd.h>

#include "corral_lua.h"

#define PUSHERS_KEY "corral.handle_pushers"

void crL_handle_type(lua_State *L, cr_obj_kind_t kind, const char *tname, crL_push_handle_fn push) {
  luaL_newmetatable(L, tname);
  lua_pushinteger(L, (lua_Integer)kind);
  lua_setfield(L, -2, "__corral_kind");
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, PUSHERS_KEY);
  lua_pushlightuserdata(L, (void *)push);
  lua_rawseti(L, -2, (lua_Integer)kind);
  lua_pop(L, 1);
}

crL_handle_t *crL_tohandle(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
  int t = lua_getfield(L, -1, "__corral_kind");
  lua_pop(L, 2);
  return t == LUA_TNUMBER ? lua_touserdata(L, idx) : NULL;
}

crL_handle_t *crL_checkhandle(lua_State *L, int arg, const char *tname) {
  crL_handle_t *h = luaL_checkudata(L, arg, tname);
  if (h->off == 0) crL_error_closed(L, tname);
  return h;
}

void crL_pushhandle(lua_State *L, cr_obj_kind_t kind, cr_off_t off) {
  cr_arena_t *a = cr_engine_arena(crL_engine(L));
  if (cr_obj_check(a, off, kind) < 0)
    crL_error(L, "ValueError", "no live %s at offset %d", cr_obj_kind_name(kind), (int)off);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, PUSHERS_KEY);
  lua_rawgeti(L, -1, (lua_Integer)kind);
  crL_push_handle_fn push = (crL_push_handle_fn)lua_touserdata(L, -1);
  lua_pop(L, 2);
  if (!push) crL_error(L, "ValueError", "no handle type registered for %s", cr_obj_kind_name(kind));
  cr_obj_retain(a, off);
  push(L, off);
}

int crL_pushhandle_adopt(lua_State *L, cr_obj_kind_t kind, cr_off_t off) {
  if (kind <= CR_OBJ_NONE || kind >= CR_OBJ__MAX) return -1;
  cr_arena_t *a = cr_engine_arena(crL_engine(L));
  if (cr_obj_check(a, off, kind) < 0) return -1;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, PUSHERS_KEY);
  lua_rawgeti(L, -1, (lua_Integer)kind);
  crL_push_handle_fn push = (crL_push_handle_fn)lua_touserdata(L, -1);
  lua_pop(L, 2);
  if (!push) return -1;
  push(L, off);
  return 0;
}

void crL_handle_release(lua_State *L, crL_handle_t *h, cr_obj_destroy_fn destroy) {
  if (h->off && h->owner_pid == getpid()) {
    cr_engine_t *e = cr_engine_default();
    if (e) cr_obj_release(cr_engine_arena(e), h->off, destroy);
  }
  h->off = 0;
  (void)L;
}
