/* corral bindings: the test hooks, compiled only in a testing build
 * (CORRAL_TESTING; bindings/lua/testing.lua gives them to the specs as
 * "corral.testing").
 *
 *   _testobj([v])         a TestObject, a one-integer shared cell: the specs
 *                         check the handle mechanism with it on its own
 *   _queue_park(where)    parks this process in its next put ("put") or get
 *                         ("get") on any queue; anything else: no parking
 *   _queue_parked(q)      how many processes are parked in q */
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "corral_lua.h"

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

static void open_testobj(lua_State *L) {
  crL_handle_type(L, CR_OBJ_TEST, TESTOBJ_MT, push_testobj);
  luaL_getmetatable(L, TESTOBJ_MT);
  static const luaL_Reg meta[] = {{"__gc", t_close}, {"__close", t_close}, {"__tostring", t_tostring}, {NULL, NULL}};
  luaL_setfuncs(L, meta, 0);
  static const luaL_Reg methods[] = {{"get", t_get}, {"set", t_set}, {"close", t_close}, {NULL, NULL}};
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* ---- the queue's park points -------------------------------------------------- */

static int q_park(lua_State *L) {
  const char *w = luaL_checkstring(L, 1);
  cr_queue_test_park(strcmp(w, "put") == 0 ? CR_QUEUE_PARK_PUT : strcmp(w, "get") == 0 ? CR_QUEUE_PARK_GET : 0);
  return 0;
}

static int q_parked(lua_State *L) {
  crL_handle_t *h = crL_tohandle(L, 1);
  luaL_argcheck(L, h && h->kind == CR_OBJ_QUEUE && h->off, 1, "open queue expected");
  lua_pushinteger(L, cr_queue_test_parked(cr_engine_arena(crL_engine(L)), h->off));
  return 1;
}

void crL_open_testing(lua_State *L) {
  open_testobj(L);
  static const luaL_Reg fns[] = {{"_testobj", t_new}, {"_queue_park", q_park}, {"_queue_parked", q_parked},
                                 {NULL, NULL}};
  crL_setfuncs(L, fns);
}
