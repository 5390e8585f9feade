/* corral bindings: handles, the userdata that name shared objects.
 *
 * A registry table maps each registered kind to its push function (a light
 * C function pointer), so the codec can rebuild a handle from (kind, off).
 * Also the test object kind, a one-integer shared cell that the specs use to
 * check the handle mechanism on its own. */
#include <stdatomic.h>
#include <string.h>
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

/* ---- the test object: a shared integer cell ------------------------------- */

#define TESTOBJ_MT "corral.TestObject"

typedef struct {
  cr_obj_t hdr;
  _Atomic int64_t value;
} testobj_t;

static void push_testobj(lua_State *L, cr_off_t off) {
  crL_handle_t *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->off = off;
  h->kind = CR_OBJ_TEST;
  h->owner_pid = getpid();
  luaL_setmetatable(L, TESTOBJ_MT);
}

static testobj_t *check_testobj(lua_State *L) {
  crL_handle_t *h = crL_checkhandle(L, 1, TESTOBJ_MT);
  return cr_arena_ptr(cr_engine_arena(crL_engine(L)), h->off);
}

static int t_new(lua_State *L) {
  lua_Integer v = luaL_optinteger(L, 1, 0);
  cr_off_t off;
  int rc = cr_obj_new(cr_engine_arena(crL_engine(L)), CR_OBJ_TEST, sizeof(testobj_t), &off);
  if (rc < 0) return crL_error_code(L, rc, "_testobj");
  testobj_t *t = cr_arena_ptr(cr_engine_arena(crL_engine(L)), off);
  atomic_store(&t->value, v);
  push_testobj(L, off);
  return 1;
}

static int t_get(lua_State *L) {
  lua_pushinteger(L, atomic_load(&check_testobj(L)->value));
  return 1;
}

static int t_set(lua_State *L) {
  testobj_t *t = check_testobj(L);
  atomic_store(&t->value, luaL_checkinteger(L, 2));
  return 0;
}

static int t_close(lua_State *L) {
  crL_handle_t *h = luaL_checkudata(L, 1, TESTOBJ_MT);
  crL_handle_release(L, h, NULL);
  return 0;
}

static int t_tostring(lua_State *L) {
  crL_handle_t *h = luaL_checkudata(L, 1, TESTOBJ_MT);
  if (h->off) lua_pushfstring(L, "TestObject (%p)", (void *)(uintptr_t)h->off);
  else lua_pushliteral(L, "TestObject (closed)");
  return 1;
}

void crL_open_handle(lua_State *L) {
  crL_handle_type(L, CR_OBJ_TEST, TESTOBJ_MT, push_testobj);
  luaL_getmetatable(L, TESTOBJ_MT);
  static const luaL_Reg meta[] = {{"__gc", t_close}, {"__close", t_close}, {"__tostring", t_tostring}, {NULL, NULL}};
  luaL_setfuncs(L, meta, 0);
  static const luaL_Reg methods[] = {{"get", t_get}, {"set", t_set}, {"close", t_close}, {NULL, NULL}};
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, t_new);
  lua_setfield(L, -2, "_testobj");
}
