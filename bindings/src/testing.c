/* corral bindings: the test hooks, compiled only in a testing build
 * (CORRAL_TESTING; bindings/lua/testing.lua gives them to the specs as
 * "corral.testing").
 *
 *   _testobj([v])         a TestObject, a one-integer shared cell: the specs
 *                         check the handle mechanism with it on its own
 *   _queue_park(where)    parks this process in its next put ("put") or get
 *                         ("get") on any queue; anything else: no parking
 *   _queue_parked(q)      how many processes are parked in q (a queue, or
 *                         the one a Connection receives from)
 *   _arena_blocks()       the allocated blocks: {off, size, head} each */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "corral_lua.h"

/* ---- the test object: a shared integer cell ------------------------------- */

#define TESTOBJ_MT "corral.TestObject"

typedef struct {
  cr_obj_t hdr;
  _Atomic int64_t value;
} testobj_t;

static const char *testobj_tname(cr_arena_t *a, cr_off_t off) {
  (void)a;
  (void)off;
  return TESTOBJ_MT;
}

static const crL_handle_class_t testobj_class = {sizeof(crL_handle_t), 0, testobj_tname, NULL};

static testobj_t *check_testobj(lua_State *L) {
  crL_handle_t *h = crL_checkhandle(L, 1, CR_OBJ_TEST);
  return cr_arena_ptr(cr_engine_arena(crL_engine(L)), h->off);
}

static int t_new(lua_State *L) {
  lua_Integer v = crL_optinteger(L, 1, 0);
  cr_off_t off;
  int rc = cr_obj_new(cr_engine_arena(crL_engine(L)), CR_OBJ_TEST, sizeof(testobj_t), &off);
  if (rc < 0) return crL_error_code(L, rc, "_testobj");
  testobj_t *t = cr_arena_ptr(cr_engine_arena(crL_engine(L)), off);
  atomic_store(&t->value, v);
  crL_handle_new(L, CR_OBJ_TEST, off);
  return 1;
}

static int t_get(lua_State *L) {
  lua_pushinteger(L, atomic_load(&check_testobj(L)->value));
  return 1;
}

static int t_set(lua_State *L) {
  testobj_t *t = check_testobj(L);
  atomic_store(&t->value, crL_checkinteger(L, 2));
  return 0;
}

static void open_testobj(lua_State *L) {
  crL_handle_class(CR_OBJ_TEST, &testobj_class);
  static const luaL_Reg methods[] = {{"get", t_get}, {"set", t_set}, {"close", crL_handle_close}, {NULL, NULL}};
  crL_handle_metatable(L, CR_OBJ_TEST, TESTOBJ_MT, NULL, methods);
}

/* ---- the queue's park points -------------------------------------------------- */

static int q_park(lua_State *L) {
  const char *w = crL_checkstring(L, 1);
  cr_queue_test_park(strcmp(w, "put") == 0 ? CR_QUEUE_PARK_PUT : strcmp(w, "get") == 0 ? CR_QUEUE_PARK_GET : 0);
  return 0;
}

static int q_parked(lua_State *L) {
  crL_handle_t *h = crL_tohandle(L, 1);
  if (!h || (h->kind != CR_OBJ_QUEUE && h->kind != CR_OBJ_PIPE) || !h->off)
    crL_argerror(L, 1, "open queue or connection expected");
  cr_arena_t *a = cr_engine_arena(crL_engine(L));
  lua_pushinteger(L, h->kind == CR_OBJ_QUEUE ? cr_queue_test_parked(a, h->off) : cr_pipe_test_parked(a, h->off));
  return 1;
}

/* ---- what is allocated in the arena ------------------------------------------- */

#define HEAD_BYTES 64

typedef struct {
  cr_arena_t *a;
  size_t n, cap;
  struct blk_s {
    cr_off_t off;
    size_t size;
    unsigned char head[HEAD_BYTES];
  } *v;
} blocks_t;

/* Under the arena's lock: only copies, into malloc'd memory (a Lua error
 * here would leave the lock held). */
static void add_block(void *ud, cr_off_t off, size_t size) {
  blocks_t *b = ud;
  if (b->n == b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 256;
    void *v = realloc(b->v, cap * sizeof *b->v);
    if (!v) return; /* the list is cut short */
    b->v = v;
    b->cap = cap;
  }
  struct blk_s *e = &b->v[b->n++];
  e->off = off;
  e->size = size;
  memcpy(e->head, cr_arena_ptr(b->a, off), size < HEAD_BYTES ? size : HEAD_BYTES);
}

static int arena_blocks(lua_State *L) {
  blocks_t b = {cr_engine_arena(crL_engine(L)), 0, 0, NULL};
  cr_arena_each_block(b.a, add_block, &b);
  lua_createtable(L, (int)b.n, 0);
  for (size_t i = 0; i < b.n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)b.v[i].off);
    lua_setfield(L, -2, "off");
    lua_pushinteger(L, (lua_Integer)b.v[i].size);
    lua_setfield(L, -2, "size");
    lua_pushlstring(L, (const char *)b.v[i].head, b.v[i].size < HEAD_BYTES ? b.v[i].size : HEAD_BYTES);
    lua_setfield(L, -2, "head");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free(b.v);
  return 1;
}

void crL_open_testing(lua_State *L) {
  open_testobj(L);
  static const luaL_Reg fns[] = {{"_testobj", t_new}, {"_queue_park", q_park}, {"_queue_parked", q_parked},
                                 {"_arena_blocks", arena_blocks}, {NULL, NULL}};
  crL_setfuncs(L, fns);
}
