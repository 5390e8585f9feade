/* corral bindings: handles, the userdata that name shared objects (see
 * corral_lua.h). One mechanism for every handle type: a class per kind,
 * kept in a C array so that the codec can rebuild a handle from (kind, off)
 * without a registry lookup, and one release path, through the process's
 * ledger (corral/refs.h). */
#include <string.h>

#include "corral_lua.h"

static const crL_handle_class_t *classes[CR_OBJ__MAX];

void crL_handle_class(cr_obj_kind_t kind, const crL_handle_class_t *cls) {
  if (kind > CR_OBJ_NONE && kind < CR_OBJ__MAX) classes[kind] = cls;
}

static int default_tostring(lua_State *L) {
  crL_handle_t *h = lua_touserdata(L, 1);
  const char *n = crL_handle_name(L, 1);
  if (h && h->off) lua_pushfstring(L, "%s (%p)", n, (void *)(uintptr_t)h->off);
  else lua_pushfstring(L, "%s (closed)", n);
  return 1;
}

/* Sets each method into the table on top, as a closure over the metatable
 * at index mt. */
static void set_methods(lua_State *L, int mt, const luaL_Reg *methods) {
  for (; methods->name; methods++) {
    lua_pushvalue(L, mt);
    lua_pushcclosure(L, methods->func, 1);
    lua_setfield(L, -2, methods->name);
  }
}

void crL_handle_metatable(lua_State *L, cr_obj_kind_t kind, const char *tname, const luaL_Reg *meta,
                          const luaL_Reg *methods) {
  luaL_newmetatable(L, tname);
  int mt = lua_gettop(L);
  lua_pushinteger(L, (lua_Integer)kind);
  lua_setfield(L, mt, "__corral_kind");
  lua_pushcfunction(L, crL_handle_gc);
  lua_setfield(L, mt, "__gc");
  lua_pushcfunction(L, crL_handle_gc);
  lua_setfield(L, mt, "__close");
  lua_pushcfunction(L, default_tostring);
  lua_setfield(L, mt, "__tostring");
  if (meta) luaL_setfuncs(L, meta, 0);
  if (methods) {
    lua_newtable(L);
    set_methods(L, mt, methods);
    lua_setfield(L, mt, "__index");
  }
  lua_settop(L, mt - 1);
}

void crL_handle_methods(lua_State *L, const char *tname, const luaL_Reg *methods) {
  luaL_getmetatable(L, tname);
  int mt = lua_gettop(L);
  lua_getfield(L, mt, "__index");
  set_methods(L, mt, methods);
  lua_settop(L, mt - 1);
}

/* The new userdata for off of kind, with no reference yet (off 0 until the
 * ledger has recorded it, so a raise in between leaves a closed handle). */
static crL_handle_t *new_userdata(lua_State *L, const crL_handle_class_t *cls, cr_obj_kind_t kind, cr_off_t off) {
  cr_arena_t *a = cr_engine_arena(crL_engine(L));
  crL_handle_t *h = lua_newuserdatauv(L, cls->size, cls->nuv);
  memset(h, 0, cls->size);
  h->kind = (uint32_t)kind;
  luaL_setmetatable(L, cls->tname(a, off));
  return h;
}

/* Records the reference in the ledger and fills the handle; on failure the
 * reference is dropped and a MemoryError raised. */
static void adopt(lua_State *L, const crL_handle_class_t *cls, crL_handle_t *h, cr_off_t off) {
  cr_engine_t *e = crL_engine(L);
  if (cr_refs_take(e, off) < 0) {
    cr_obj_drop(cr_engine_arena(e), off);
    crL_error(L, "MemoryError", "%s: the shared arena has no room to record this handle",
              cr_obj_kind_name((cr_obj_kind_t)h->kind));
  }
  h->off = off;
  if (cls->init) cls->init(L, h);
}

void crL_handle_new(lua_State *L, cr_obj_kind_t kind, cr_off_t off) {
  const crL_handle_class_t *cls = kind > CR_OBJ_NONE && kind < CR_OBJ__MAX ? classes[kind] : NULL;
  if (!cls) {
    cr_obj_drop(cr_engine_arena(crL_engine(L)), off);
    crL_error(L, "ValueError", "no handle type registered for %s", cr_obj_kind_name(kind));
  }
  adopt(L, cls, new_userdata(L, cls, kind, off), off);
}

void crL_pushhandle(lua_State *L, cr_obj_kind_t kind, cr_off_t off) {
  cr_arena_t *a = cr_engine_arena(crL_engine(L));
  if (cr_obj_check(a, off, kind) < 0)
    crL_error(L, "ValueError", "no live %s at offset %d", cr_obj_kind_name(kind), (int)off);
  cr_obj_retain(a, off);
  crL_handle_new(L, kind, off);
}

int crL_pushhandle_adopt(lua_State *L, cr_obj_kind_t kind, cr_off_t off) {
  if (kind <= CR_OBJ_NONE || kind >= CR_OBJ__MAX || !classes[kind]) return -1;
  if (cr_obj_check(cr_engine_arena(crL_engine(L)), off, kind) < 0) return -1;
  adopt(L, classes[kind], new_userdata(L, classes[kind], kind, off), off);
  return 0;
}

int crL_pushhandle_copy(lua_State *L, cr_obj_kind_t kind, cr_off_t off) {
  if (kind <= CR_OBJ_NONE || kind >= CR_OBJ__MAX || !classes[kind]) return -1;
  cr_arena_t *a = cr_engine_arena(crL_engine(L));
  if (cr_obj_check(a, off, kind) < 0) return -1;
  crL_handle_t *h = new_userdata(L, classes[kind], kind, off);
  cr_obj_retain(a, off);
  adopt(L, classes[kind], h, off);
  return 0;
}

crL_handle_t *crL_tohandle(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
  int t = lua_getfield(L, -1, "__corral_kind");
  lua_pop(L, 2);
  return t == LUA_TNUMBER ? lua_touserdata(L, idx) : NULL;
}

/* The handle of kind at arg, open or released, or NULL for anything else. */
static crL_handle_t *to_kind(lua_State *L, int arg, cr_obj_kind_t kind) {
  crL_handle_t *h = lua_touserdata(L, arg);
  int ok = 0;
  if (h && lua_getmetatable(L, arg)) {
    /* Methods carry their metatable as upvalue 1: one comparison on the
     * usual path (every acquire, put and get comes through here). */
    ok = lua_rawequal(L, -1, lua_upvalueindex(1));
    if (!ok) {
      lua_getfield(L, -1, "__corral_kind");
      ok = lua_tointeger(L, -1) == (lua_Integer)kind && lua_isinteger(L, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return ok ? h : NULL;
}

crL_handle_t *crL_checkhandle(lua_State *L, int arg, cr_obj_kind_t kind) {
  crL_handle_t *h = to_kind(L, arg, kind);
  if (!h) {
    crL_objecterror(L, arg, cr_obj_kind_name(kind));
    return NULL;
  }
  if (h->off == 0) crL_error_closed(L, crL_handle_name(L, arg));
  return h;
}

/* The kind of the running method's handles: its metatable's (upvalue 1). */
static cr_obj_kind_t method_kind(lua_State *L) {
  lua_getfield(L, lua_upvalueindex(1), "__corral_kind");
  cr_obj_kind_t kind = (cr_obj_kind_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return kind;
}

crL_handle_t *crL_checkself(lua_State *L) { return crL_checkhandle(L, 1, method_kind(L)); }

int crL_handle_close(lua_State *L) {
  cr_obj_kind_t kind = method_kind(L);
  crL_handle_t *h = to_kind(L, 1, kind);
  if (!h) return crL_selferror(L, cr_obj_kind_name(kind));
  crL_handle_release(L, h);
  return 0;
}

const char *crL_handle_name(lua_State *L, int idx) {
  const char *n = NULL;
  if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) {
    n = lua_tostring(L, -1); /* kept alive by the metatable */
    lua_pop(L, 1);
  }
  if (!n) return "object";
  const char *dot = strchr(n, '.');
  return dot ? dot + 1 : n;
}

void crL_handle_release(lua_State *L, crL_handle_t *h) {
  (void)L;
  if (!h->off) return;
  cr_off_t off = h->off;
  h->off = 0;
  cr_engine_t *e = cr_engine_default();
  if (e) cr_refs_drop(e, off);
}

int crL_handle_gc(lua_State *L) {
  crL_handle_t *h = crL_tohandle(L, 1);
  if (h) crL_handle_release(L, h);
  return 0;
}
