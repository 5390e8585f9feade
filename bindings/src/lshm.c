/* corral bindings: Value, Array, RawValue, RawArray (engine: corral/shm.h).
 *
 *   Value(typecode, init, {lock=true})  v.value, v:get_lock(), v:add(n),
 *                                       v:compare_and_set(old, new)
 *   Array(typecode, size_or_table, {lock=true})
 *                                       a[i] for i in 1..#a, #a, ipairs(a),
 *                                       a:totable(), a:get_lock()
 *   RawValue(typecode, init), RawArray(typecode, size_or_table): no lock.
 *
 * lock: true (default) attaches a new RLock, as Python does; false none; or
 * an existing Lock or RLock. Conversions: integer typecodes take integers
 * (or floats with an exact integer value); storing outside the typecode's
 * range raises OverflowError and stores nothing (no silent wrapping); 'L'
 * and 'Q' hold 0..math.maxinteger. 'f' and 'd' take numbers ('f' rounds to
 * single precision). 'c' holds one byte: it takes a one-byte string (or an
 * integer 0..255) and reads back as a one-byte string; Array('c', "text")
 * fills an array from a string. A string stored into a numeric item, or a
 * number into 'c', raises TypeError. Indexing outside 1..#a raises
 * IndexError, except that reading index #a+1 gives nil, so that ipairs
 * stops there as it does on a table. */
#include <string.h>

#include "corral_lua.h"

#define VALUE_MT "corral.Value"
#define ARRAY_MT "corral.Array"

typedef struct {
  crL_handle_t h;
  cr_arena_t *a;
  int tc;
  size_t n;
} lshm_t;

static void init_shm(lua_State *L, crL_handle_t *h) {
  lshm_t *u = (lshm_t *)h;
  u->a = cr_engine_arena(crL_engine(L));
  u->tc = cr_shm_typecode(u->a, h->off);
  u->n = cr_shm_len(u->a, h->off);
}

static const char *value_tname(cr_arena_t *a, cr_off_t off) {
  (void)a;
  (void)off;
  return VALUE_MT;
}

static const char *array_tname(cr_arena_t *a, cr_off_t off) {
  (void)a;
  (void)off;
  return ARRAY_MT;
}

static const crL_handle_class_t value_class = {sizeof(lshm_t), 2, value_tname, init_shm};
static const crL_handle_class_t array_class = {sizeof(lshm_t), 2, array_tname, init_shm};

static const char *tname_of(lshm_t *u) {
  int raw = !u->h.off || !cr_shm_lock(u->a, u->h.off);
  if (u->h.kind == CR_OBJ_VALUE) return raw ? "RawValue" : "Value";
  return raw ? "RawArray" : "Array";
}

/* The handle at arg, open or not (NULL if it is none). */
static lshm_t *toshm(lua_State *L, int arg) {
  crL_handle_t *h = crL_tohandle(L, arg);
  return h && (h->kind == CR_OBJ_VALUE || h->kind == CR_OBJ_ARRAY) ? (lshm_t *)h : NULL;
}

static lshm_t *check(lua_State *L, int arg) {
  lshm_t *u = toshm(L, arg);
  if (!u) {
    crL_objecterror(L, arg, "Value or Array");
    return NULL;
  }
  if (!u->h.off) crL_error_closed(L, crL_handle_name(L, arg));
  return u;
}

/* ---- item conversion ------------------------------------------------------------ */

static void store(lua_State *L, lshm_t *u, size_t i, int idx) {
  int tc = u->tc, rc;
  if (tc == 'c') {
    int64_t byte;
    if (lua_type(L, idx) == LUA_TSTRING) {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      if (len != 1) crL_error(L, "ValueError", "typecode 'c' holds one byte, got a string of length %d", (int)len);
      byte = (unsigned char)s[0];
    } else if (lua_isinteger(L, idx)) {
      byte = lua_tointeger(L, idx);
    } else {
      crL_error(L, "TypeError", "typecode 'c' expects a one-byte string, got %s", luaL_typename(L, idx));
      return;
    }
    rc = cr_shm_set_int(u->a, u->h.off, i, byte);
  } else if (cr_shm_is_integer(tc)) {
    lua_Integer v;
    if (lua_type(L, idx) != LUA_TNUMBER) {
      crL_error(L, "TypeError", "typecode '%c' expects an integer, got %s", tc, luaL_typename(L, idx));
      return;
    }
    if (!lua_isinteger(L, idx)) {
      double d = lua_tonumber(L, idx);
      if (!lua_numbertointeger(d, &v) || (double)v != d) {
        crL_error(L, "TypeError", "typecode '%c' expects an integer, got %f", tc, d);
        return;
      }
    } else {
      v = lua_tointeger(L, idx);
    }
    rc = cr_shm_set_int(u->a, u->h.off, i, v);
  } else {
    if (lua_type(L, idx) != LUA_TNUMBER) {
      crL_error(L, "TypeError", "typecode '%c' expects a number, got %s", tc, luaL_typename(L, idx));
      return;
    }
    rc = cr_shm_set_float(u->a, u->h.off, i, lua_tonumber(L, idx));
  }
  if (rc == CR_EOVERFLOW) {
    int64_t lo, hi;
    cr_shm_range(tc, &lo, &hi);
    crL_error(L, "OverflowError", "%s is out of range for typecode '%c' (%I..%I)", luaL_tolstring(L, idx, NULL), tc,
              (lua_Integer)lo, (lua_Integer)hi);
  } else if (rc < 0) {
    crL_error_code(L, rc, "store");
  }
}

static void load(lua_State *L, lshm_t *u, size_t i) {
  if (cr_shm_is_integer(u->tc)) {
    int64_t v = 0;
    cr_shm_get_int(u->a, u->h.off, i, &v);
    if (u->tc == 'c') {
      char c = (char)v;
      lua_pushlstring(L, &c, 1);
    } else {
      lua_pushinteger(L, (lua_Integer)v);
    }
  } else {
    double d = 0;
    cr_shm_get_float(u->a, u->h.off, i, &d);
    lua_pushnumber(L, d);
  }
}

/* ---- constructors ------------------------------------------------------------------ */

static int check_typecode(lua_State *L, int arg, const char *what) {
  size_t len;
  const char *s = lua_tolstring(L, arg, &len);
  if (!s || lua_type(L, arg) != LUA_TSTRING || len != 1 || cr_shm_itemsize(s[0]) < 0)
    return crL_error(L, "ValueError",
                     "%s: bad typecode %s (expected one of b B h H i I l L q Q f d c)", what,
                     s ? lua_pushfstring(L, "'%s'", s) : luaL_typename(L, arg));
  return s[0];
}

/* The lock to attach from opts at arg ({lock=...}); creates one when
 * asked. Returns its offset with a reference the caller drops, or 0. */
static cr_off_t opt_lock(lua_State *L, int arg, int raw, const char *what, int *created) {
  *created = 0;
  int want = !raw;
  cr_off_t off = 0;
  if (!raw && !lua_isnoneornil(L, arg)) {
    if (!lua_istable(L, arg))
      crL_error(L, "ValueError", "%s: options must be a table {lock=...}, got %s", what, luaL_typename(L, arg));
    static const char *const names[] = {"lock", NULL};
    crL_checkopts(L, arg, names);
    lua_getfield(L, arg, "lock");
    if (lua_isboolean(L, -1)) {
      want = lua_toboolean(L, -1);
    } else if (!lua_isnil(L, -1)) {
      crL_handle_t *h = crL_tohandle(L, -1);
      if (!h || (h->kind != CR_OBJ_LOCK && h->kind != CR_OBJ_RLOCK))
        crL_error(L, "ValueError", "%s: lock must be true, false, a Lock or an RLock", what);
      if (!h->off) crL_error_closed(L, h->kind == CR_OBJ_LOCK ? "Lock" : "RLock");
      off = h->off;
      want = 0;
    }
    lua_pop(L, 1);
  }
  if (want) {
    int rc = cr_rlock_new(cr_engine_arena(crL_engine(L)), &off);
    if (rc < 0) crL_error_code(L, rc, what);
    *created = 1;
  }
  return off;
}

static int new_shm(lua_State *L, int kind, int raw) {
  const char *what = kind == CR_OBJ_VALUE ? (raw ? "RawValue" : "Value") : (raw ? "RawArray" : "Array");
  lua_settop(L, 3);
  int tc = check_typecode(L, 1, what);
  cr_arena_t *a = cr_engine_arena(crL_engine(L));
  size_t n = 1;
  int init_t = lua_type(L, 2);
  if (kind == CR_OBJ_ARRAY) {
    if (init_t == LUA_TNUMBER) {
      if (!lua_isinteger(L, 2) || lua_tointeger(L, 2) < 0)
        return crL_error(L, "ValueError", "%s: size must be an integer >= 0", what);
      n = (size_t)lua_tointeger(L, 2);
    } else if (init_t == LUA_TTABLE) {
      n = (size_t)luaL_len(L, 2);
    } else if (init_t == LUA_TSTRING && tc == 'c') {
      n = lua_rawlen(L, 2);
    } else {
      return crL_error(L, "ValueError", "%s: bad argument #2 (size or table expected, got %s)", what,
                       luaL_typename(L, 2));
    }
  }
  int created;
  cr_off_t lock = opt_lock(L, 3, raw, what, &created);
  cr_off_t off;
  int rc = cr_shm_new(a, kind, tc, n, lock, &off);
  if (created) cr_obj_drop(a, lock); /* the storage holds it now */
  if (rc < 0) return crL_error_code(L, rc, what);
  crL_handle_new(L, (cr_obj_kind_t)kind, off);
  lshm_t *u = lua_touserdata(L, -1);
  int self = lua_gettop(L);
  if (kind == CR_OBJ_VALUE) {
    if (!lua_isnoneornil(L, 2)) store(L, u, 0, 2);
  } else if (init_t == LUA_TTABLE) {
    for (size_t i = 0; i < n; i++) {
      lua_geti(L, 2, (lua_Integer)i + 1);
      store(L, u, i, lua_gettop(L));
      lua_pop(L, 1);
    }
  } else if (init_t == LUA_TSTRING) {
    const char *s = lua_tostring(L, 2);
    for (size_t i = 0; i < n; i++) cr_shm_set_int(a, off, i, (unsigned char)s[i]);
  }
  lua_settop(L, self);
  return 1;
}

static int l_value(lua_State *L) { return new_shm(L, CR_OBJ_VALUE, 0); }
static int l_rawvalue(lua_State *L) { return new_shm(L, CR_OBJ_VALUE, 1); }
static int l_array(lua_State *L) { return new_shm(L, CR_OBJ_ARRAY, 0); }
static int l_rawarray(lua_State *L) { return new_shm(L, CR_OBJ_ARRAY, 1); }

/* ---- methods ------------------------------------------------------------------------ */

/* close(): releases the Value or Array, open or not. */
static int m_close(lua_State *L) {
  lshm_t *u = toshm(L, 1);
  if (!u) return crL_selferror(L, "Value or Array");
  crL_handle_release(L, &u->h);
  return 0;
}

static int m_get_lock(lua_State *L) {
  lshm_t *u = check(L, 1);
  if (lua_getiuservalue(L, 1, 2) != LUA_TNIL) return 1;
  cr_off_t lock = cr_shm_lock(u->a, u->h.off);
  if (!lock) return crL_error(L, "ValueError", "%s has no lock", tname_of(u));
  crL_pushhandle(L, (cr_obj_kind_t)((cr_obj_t *)cr_arena_ptr(u->a, lock))->kind, lock);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, 2);
  return 1;
}

static lua_Integer check_int_arg(lua_State *L, int arg, const char *what) {
  if (!lua_isinteger(L, arg))
    crL_error(L, "TypeError", "%s: bad argument #%d (integer expected, got %s)", what, arg - 1,
              lua_type(L, arg) == LUA_TNUMBER ? "float" : luaL_typename(L, arg));
  return lua_tointeger(L, arg);
}

static void check_int_value(lua_State *L, lshm_t *u, const char *what) {
  if (u->h.kind != CR_OBJ_VALUE || !cr_shm_is_integer(u->tc) || u->tc == 'c')
    crL_error(L, "TypeError", "%s needs an integer Value (typecode '%c')", what, u->tc);
}

/* add(n) -> the new value, atomically; OverflowError leaves it unchanged. */
static int m_add(lua_State *L) {
  lshm_t *u = check(L, 1);
  check_int_value(L, u, "add");
  lua_Integer d = lua_isnoneornil(L, 2) ? 1 : check_int_arg(L, 2, "add");
  int64_t r;
  int rc = cr_shm_add(u->a, u->h.off, 0, d, &r);
  if (rc == CR_EOVERFLOW) return crL_error(L, "OverflowError", "add: result out of range for typecode '%c'", u->tc);
  if (rc < 0) return crL_error_code(L, rc, "add");
  lua_pushinteger(L, r);
  return 1;
}

/* compare_and_set(old, new) -> true when the value was old and is now new. */
static int m_cas(lua_State *L) {
  lshm_t *u = check(L, 1);
  check_int_value(L, u, "compare_and_set");
  lua_Integer o = check_int_arg(L, 2, "compare_and_set");
  lua_Integer n = check_int_arg(L, 3, "compare_and_set");
  int rc = cr_shm_cas(u->a, u->h.off, 0, o, n);
  if (rc == CR_EOVERFLOW)
    return crL_error(L, "OverflowError", "compare_and_set: %I is out of range for typecode '%c'", n, u->tc);
  if (rc < 0) return crL_error_code(L, rc, "compare_and_set");
  lua_pushboolean(L, rc);
  return 1;
}

static int m_totable(lua_State *L) {
  lshm_t *u = check(L, 1);
  lua_createtable(L, (int)u->n, 0);
  for (size_t i = 0; i < u->n; i++) {
    load(L, u, i);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int m_tostring(lua_State *L) {
  lshm_t *u = lua_touserdata(L, 1);
  if (!u->h.off) {
    lua_pushfstring(L, "%s (closed)", tname_of(u));
  } else if (u->h.kind == CR_OBJ_VALUE) {
    load(L, u, 0);
    lua_pushfstring(L, "%s('%c', %s) (%p)", tname_of(u), u->tc, luaL_tolstring(L, -1, NULL),
                    (void *)(uintptr_t)u->h.off);
  } else {
    lua_pushfstring(L, "%s('%c', %d) (%p)", tname_of(u), u->tc, (int)u->n, (void *)(uintptr_t)u->h.off);
  }
  return 1;
}

/* ---- Value: the field `value` ------------------------------------------------------------- */

/* Methods first: they stay reachable on a closed handle (close() twice). */
static int method(lua_State *L) {
  lua_pushvalue(L, 2);
  return lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL;
}

/* The open Value at 1 when it is one (its metatable is upvalue 2 of the
 * metamethods: one comparison on the path of every v.value). */
static lshm_t *fast_value(lua_State *L) {
  lshm_t *u = lua_touserdata(L, 1);
  if (!u || !lua_getmetatable(L, 1)) return NULL;
  int ok = lua_rawequal(L, -1, lua_upvalueindex(2));
  lua_pop(L, 1);
  return ok && u->h.off ? u : NULL;
}

static int is_value_key(lua_State *L) {
  size_t len;
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &len) : NULL;
  return k && len == 5 && memcmp(k, "value", 5) == 0;
}

static int v_index(lua_State *L) {
  lshm_t *u = fast_value(L);
  if (u && is_value_key(L)) {
    load(L, u, 0);
    return 1;
  }
  if (toshm(L, 1) && method(L)) return 1;
  u = check(L, 1);
  const char *k = lua_tostring(L, 2);
  if (lua_type(L, 2) == LUA_TSTRING) {
    if (strcmp(k, "value") == 0) {
      load(L, u, 0);
      return 1;
    }
    if (strcmp(k, "typecode") == 0) {
      char c = (char)u->tc;
      lua_pushlstring(L, &c, 1);
      return 1;
    }
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int v_newindex(lua_State *L) {
  lshm_t *u = fast_value(L);
  if (u && is_value_key(L) && lua_isinteger(L, 3) && u->tc != 'c') {
    if (cr_shm_set_int(u->a, u->h.off, 0, lua_tointeger(L, 3)) == 0) return 0;
  }
  u = check(L, 1);
  if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "value") != 0)
    return crL_error(L, "ValueError", "%s has no field '%s' to set (only 'value')", tname_of(u),
                     luaL_tolstring(L, 2, NULL));
  store(L, u, 0, 3);
  return 0;
}

/* ---- Array: items ---------------------------------------------------------------------------- */

/* The 0-based item for key at idx: 1 with *i set, 0 for a non-number key;
 * raises IndexError outside 1..n (+1 when reading allows the end). */
static int array_index(lua_State *L, lshm_t *u, int idx, size_t *i, int reading) {
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  lua_Integer k;
  if (!lua_isinteger(L, idx)) {
    double d = lua_tonumber(L, idx);
    if (!lua_numbertointeger(d, &k) || (double)k != d)
      return crL_error(L, "IndexError", "Array index must be an integer, got %f", d);
  } else {
    k = lua_tointeger(L, idx);
  }
  if (k >= 1 && (lua_Unsigned)k <= u->n) {
    *i = (size_t)(k - 1);
    return 1;
  }
  if (reading && (lua_Unsigned)k == u->n + 1) {
    *i = u->n;
    return 1;
  }
  return crL_error(L, "IndexError", "Array index %I out of range (1..%I)", k, (lua_Integer)u->n);
}

static int a_index(lua_State *L) {
  if (lua_type(L, 2) == LUA_TSTRING && toshm(L, 1) && method(L)) return 1;
  lshm_t *u = check(L, 1);
  size_t i;
  if (array_index(L, u, 2, &i, 1)) {
    if (i == u->n) lua_pushnil(L);
    else load(L, u, i);
    return 1;
  }
  if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "typecode") == 0) {
    char c = (char)u->tc;
    lua_pushlstring(L, &c, 1);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int a_newindex(lua_State *L) {
  lshm_t *u = check(L, 1);
  size_t i;
  if (!array_index(L, u, 2, &i, 0))
    return crL_error(L, "IndexError", "Array index must be an integer, got %s", luaL_typename(L, 2));
  store(L, u, i, 3);
  return 0;
}

static int a_len(lua_State *L) {
  lshm_t *u = check(L, 1);
  lua_pushinteger(L, (lua_Integer)u->n);
  return 1;
}

/* ---- registration ---------------------------------------------------------------------------- */

void crL_open_shm(lua_State *L) {
  static const luaL_Reg value_m[] = {{"get_lock", m_get_lock}, {"add", m_add}, {"compare_and_set", m_cas},
                                     {"close", m_close},       {NULL, NULL}};
  static const luaL_Reg array_m[] = {{"get_lock", m_get_lock}, {"totable", m_totable}, {"close", m_close}, {NULL, NULL}};
  crL_handle_class(CR_OBJ_VALUE, &value_class);
  crL_handle_class(CR_OBJ_ARRAY, &array_class);
  static const luaL_Reg vmeta[] = {{"__tostring", m_tostring}, {NULL, NULL}};
  crL_handle_metatable(L, CR_OBJ_VALUE, VALUE_MT, vmeta, NULL);
  luaL_getmetatable(L, VALUE_MT);
  luaL_newlib(L, value_m);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, v_index, 2);
  lua_setfield(L, -2, "__index");
  lua_pushnil(L);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, v_newindex, 2);
  lua_setfield(L, -2, "__newindex");
  lua_pop(L, 1);

  static const luaL_Reg ameta[] = {{"__tostring", m_tostring}, {"__newindex", a_newindex}, {"__len", a_len},
                                   {NULL, NULL}};
  crL_handle_metatable(L, CR_OBJ_ARRAY, ARRAY_MT, ameta, NULL);
  luaL_getmetatable(L, ARRAY_MT);
  luaL_newlib(L, array_m);
  lua_pushcclosure(L, a_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  static const luaL_Reg fns[] = {{"Value", l_value}, {"RawValue", l_rawvalue}, {"Array", l_array},
                                 {"RawArray", l_rawarray}, {NULL, NULL}};
  crL_setfuncs(L, fns);
}
