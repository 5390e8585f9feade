/* corral bindings: DictProxy and Namespace, dicts shared by the processes
 * of an engine (made by m:dict() and m:Namespace(); the Manager, the
 * handles and what the proxies share are in manager.c).
 *
 *   DictProxy  d[k], d[k] = v, d[k] = nil deletes, #d, pairs (insertion
 *              order); get pop keys values items update setdefault totable
 *              copy (= totable) clear popitem.
 *              A method name read with d.name gives the method: data stored
 *              under such a key is read with d:get(name).
 *   Namespace  ns.field, ns.field = v (nil deletes), pairs(ns); no methods.
 *
 * Keys: strings, numbers (not NaN) and booleans, each encoded by the codec
 * to a canonical byte string (crL_encode_key), since the engine compares
 * keys by their bytes; anything else raises ValueError naming the type. */
#include "manager_int.h"

/* Encodes the key at idx (crL_encode_key: the stack may grow by one);
 * raises ValueError for a value that cannot be a key. */
static void key_encode(lua_State *L, int idx, crL_key_t *k, const char *what) {
  int rc = crL_encode_key(L, idx, k);
  if (rc == CRL_KEY_NAN) crL_error(L, "ValueError", "%s: NaN cannot be a key", what);
  else if (rc == CRL_KEY_TYPE)
    crL_error(L, "ValueError", "%s: a key must be a string, number or boolean, not a %s", what,
              luaL_typename(L, idx));
}

/* ---- one key ---------------------------------------------------------------------- */

/* Pushes d[key at idx], or returns 0 (nothing pushed) when absent. */
static int dict_get(lua_State *L, mud_t *u, int idx, const char *what) {
  crL_key_t k;
  key_encode(L, idx, &k, what);
  mgr_sink_t s;
  mgr_sink_init(&s, L, u->a);
  mgr_lock(L, u, what);
  int rc = cr_dict_get(u->a, u->h.off, k.p, k.len, mgr_sink, &s);
  mgr_unlock(L, u);
  if (rc < 0) return mgr_op_error(L, u, rc, what);
  if (rc == 0) return 0;
  crL__sink_finish(&s.s);
  return 1;
}

/* d[key at kidx] = value at vidx (nil deletes). */
static void dict_set(lua_State *L, mud_t *u, int kidx, int vidx, const char *what) {
  crL_key_t k;
  kidx = lua_absindex(L, kidx);
  vidx = lua_absindex(L, vidx);
  key_encode(L, kidx, &k, what);
  int rc;
  if (lua_isnil(L, vidx)) {
    mgr_lock(L, u, what);
    rc = cr_dict_pop(u->a, u->h.off, k.p, k.len, NULL, NULL);
    mgr_unlock(L, u);
    if (rc < 0) mgr_op_error(L, u, rc, what);
    return;
  }
  size_t n;
  const char *p = crL_encode(L, vidx, "value", &n);
  mgr_lock_or_drop(L, u, p, n, what);
  rc = cr_dict_set(u->a, u->h.off, k.p, k.len, p, n);
  mgr_store_result(L, u, rc, p, n, what);
}

static int d_index(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_DICT);
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    lua_pop(L, 1);
  }
  return dict_get(L, u, 2, "get");
}

static int d_newindex(lua_State *L) {
  dict_set(L, mgr_check(L, 1, CR_MANAGED_DICT), 2, 3, "set");
  return 0;
}

static int ns_index(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_NAMESPACE);
  crL_checktype(L, 2, LUA_TSTRING);
  return dict_get(L, u, 2, "get");
}

static int ns_newindex(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_NAMESPACE);
  if (lua_type(L, 2) != LUA_TSTRING)
    return crL_error(L, "ValueError", "Namespace: field names are strings, not %s", luaL_typename(L, 2));
  dict_set(L, u, 2, 3, "set");
  return 0;
}

static int d_len(lua_State *L) { return mgr_len(L, mgr_check(L, 1, 0), cr_dict_len); }

/* get(k [, default]) */
static int d_get(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_DICT);
  lua_settop(L, 3);
  if (dict_get(L, u, 2, "get")) return 1;
  lua_pushvalue(L, 3);
  return 1;
}

/* pop(k [, default]): KeyError when absent and no default is given. */
static int d_pop(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_DICT);
  int has_default = lua_gettop(L) >= 3;
  crL_key_t k;
  key_encode(L, 2, &k, "pop");
  mgr_sink_t s;
  mgr_sink_init(&s, L, u->a);
  mgr_lock(L, u, "pop");
  int rc = cr_dict_pop(u->a, u->h.off, k.p, k.len, mgr_sink, &s);
  mgr_unlock(L, u);
  if (rc < 0) return mgr_op_error(L, u, rc, "pop");
  if (rc == 1) {
    crL__sink_finish(&s.s);
    return 1;
  }
  if (has_default) {
    lua_pushvalue(L, 3);
    return 1;
  }
  luaL_tolstring(L, 2, NULL);
  return crL_error(L, "KeyError", "DictProxy.pop: key %s not found", lua_tostring(L, -1));
}

/* ---- the whole dict: keys, values, items, totable, update ---------------------------- */

/* Items of the locked dict: a table {k1, v1, k2, v2, ...} in order. */
typedef struct {
  lua_State *L;
  cr_arena_t *a;
  lua_Integer n;
} each_t;

static int each_push(void *ud, const void *key, size_t klen, const void *val, size_t vlen) {
  each_t *e = ud;
  crL_decode(e->L, key, klen, CRL_DECODE_NO_FUNCTIONS | CRL_DECODE_NO_HANDLES);
  lua_rawseti(e->L, -2, ++e->n);
  mgr_push_stored(e->L, e->a, val, vlen);
  lua_rawseti(e->L, -2, ++e->n);
  return 0;
}

/* (Lua may raise inside cr_dict_each's callback: it holds nothing that
 * needs undoing, and the lock is given back by mgr_run_locked.) */
int mgr_dict_items_body(lua_State *L) {
  mud_t *u = lua_touserdata(L, 1);
  size_t n = cr_dict_len(u->a, u->h.off);
  lua_createtable(L, (int)(2 * n), 0);
  each_t e = {L, u->a, 0};
  cr_dict_each(u->a, u->h.off, each_push, &e);
  return 1;
}

/* keys(), values(), items(): arrays in insertion order (items: {k, v}). */
static int d_view(lua_State *L, int which) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_DICT);
  mgr_snapshot_flat(L, 1, u);
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  lua_createtable(L, (int)(n / 2), 0);
  for (lua_Integer i = 1; i <= n; i += 2) {
    if (which == 2) {
      lua_createtable(L, 2, 0);
      lua_rawgeti(L, -3, i);
      lua_rawseti(L, -2, 1);
      lua_rawgeti(L, -3, i + 1);
      lua_rawseti(L, -2, 2);
    } else {
      lua_rawgeti(L, -2, i + which);
    }
    lua_rawseti(L, -2, (i + 1) / 2);
  }
  return 1;
}

static int d_keys(lua_State *L) { return d_view(L, 0); }
static int d_values(lua_State *L) { return d_view(L, 1); }
static int d_items(lua_State *L) { return d_view(L, 2); }

static int d_totable(lua_State *L) {
  mud_t *u = mgr_check(L, 1, 0);
  mgr_snapshot_flat(L, 1, u);
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  lua_createtable(L, 0, (int)(n / 2));
  for (lua_Integer i = 1; i <= n; i += 2) {
    lua_rawgeti(L, -2, i);
    lua_rawgeti(L, -3, i + 1);
    lua_rawset(L, -3);
  }
  return 1;
}

/* body(dict, keys, values): sets each pair; stored encodings are replaced
 * by true so that a failure drops only the rest. */
static int update_body(lua_State *L) {
  mud_t *u = lua_touserdata(L, 1);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
  for (lua_Integer i = 1; i <= n; i++) {
    size_t kl, vl;
    lua_rawgeti(L, 2, i);
    lua_rawgeti(L, 3, i);
    const char *k = lua_tolstring(L, -2, &kl), *v = lua_tolstring(L, -1, &vl);
    mgr_body_check(L, cr_dict_set(u->a, u->h.off, k, kl, v, vl), "update");
    lua_pop(L, 2);
    lua_pushboolean(L, 1);
    lua_rawseti(L, 3, i);
  }
  return 0;
}

/* update(table or DictProxy/Namespace): a proxy's pairs are taken in its
 * order (a snapshot), a table's in the order of next. */
int mgr_dict_update(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_DICT);
  lua_settop(L, 2);
  mud_t *src = lua_type(L, 2) == LUA_TUSERDATA && crL_tohandle(L, 2) ? mgr_check(L, 2, 0) : NULL;
  if (src && src->type != CR_MANAGED_LIST) {
    mgr_snapshot_flat(L, 2, src);
  } else if (lua_istable(L, 2)) {
    lua_newtable(L);
    lua_Integer n = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      lua_pushvalue(L, -2);
      lua_rawseti(L, 3, ++n);
      lua_rawseti(L, 3, ++n);
    }
  } else {
    return crL_error(L, "ValueError", "DictProxy.update: expected a table or a DictProxy, got %s",
                     luaL_typename(L, 2));
  }
  /* 3: flat {k1, v1, ...}; 4: encoded keys; 5: encoded values */
  lua_newtable(L);
  lua_newtable(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 3);
  for (lua_Integer i = 1; i <= n; i += 2) {
    crL_key_t k;
    int top = lua_gettop(L);
    lua_rawgeti(L, 3, i);
    key_encode(L, top + 1, &k, "update");
    lua_pushlstring(L, k.p, k.len);
    lua_rawseti(L, 4, (i + 1) / 2);
    lua_settop(L, top);
    lua_rawgeti(L, 3, i + 1);
    size_t vl;
    const char *p = crL_encode(L, top + 1, "value", &vl);
    lua_pushlstring(L, p, vl);
    lua_rawseti(L, 5, (i + 1) / 2);
    lua_settop(L, top);
  }
  lua_pushcfunction(L, update_body);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 4);
  lua_pushvalue(L, 5);
  int rc = cr_managed_lock(u->a, u->h.off);
  if (rc < 0) {
    mgr_drop_all(L, 5);
    return mgr_op_error(L, u, rc, "update");
  }
  int st = lua_pcall(L, 3, 0, 0);
  mgr_unlock(L, u);
  if (st != LUA_OK) {
    mgr_drop_all(L, 5);
    lua_error(L);
  }
  return 0;
}

/* setdefault(k, default): d[k] if present, else stores and returns default. */
static int d_setdefault(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_DICT);
  lua_settop(L, 3);
  crL_key_t k;
  key_encode(L, 2, &k, "setdefault");
  size_t n = 0;
  const char *p = NULL;
  if (!lua_isnil(L, 3)) p = crL_encode(L, 3, "value", &n);
  mgr_sink_t s;
  mgr_sink_init(&s, L, u->a);
  if (p) mgr_lock_or_drop(L, u, p, n, "setdefault");
  else mgr_lock(L, u, "setdefault");
  int rc = cr_dict_get(u->a, u->h.off, k.p, k.len, mgr_sink, &s);
  int stored = 0;
  if (rc == 0 && p) {
    rc = cr_dict_set(u->a, u->h.off, k.p, k.len, p, n);
    stored = rc >= 0;
  }
  mgr_unlock(L, u);
  if (!stored && p) crL_decode_drop(L, p, n);
  if (rc < 0) return mgr_op_error(L, u, rc, "setdefault");
  if (stored || !p) {
    if (rc == 1 && !p) {
      crL__sink_finish(&s.s);
      return 1;
    }
    lua_pushvalue(L, 3);
    return 1;
  }
  crL__sink_finish(&s.s);
  return 1;
}

/* ---- clear, popitem ------------------------------------------------------------------- */

/* Pushes each key's encoding onto the array on top (for the cr_dict_each
 * of a locked dict). */
static int key_push(void *ud, const void *key, size_t klen, const void *val, size_t vlen) {
  (void)val, (void)vlen;
  lua_State *L = ud;
  lua_pushlstring(L, key, klen);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* Removes every key, in order: each removal is one published step, so a
 * process killed in the middle leaves the keys not yet removed. */
static int clear_body(lua_State *L) {
  mud_t *u = lua_touserdata(L, 1);
  lua_createtable(L, (int)cr_dict_len(u->a, u->h.off), 0);
  cr_dict_each(u->a, u->h.off, key_push, L);
  for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, -1); i <= n; i++) {
    size_t klen;
    lua_rawgeti(L, -1, i);
    const char *k = lua_tolstring(L, -1, &klen);
    mgr_body_check(L, cr_dict_pop(u->a, u->h.off, k, klen, NULL, NULL), "clear");
    lua_pop(L, 1);
  }
  return 0;
}

static int d_clear(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_DICT);
  lua_settop(L, 1);
  return mgr_run_locked(L, u, 1, clear_body, 0, 0, "clear");
}

typedef struct {
  const void *key, *val;
  size_t klen, vlen;
} last_t;

static int last_item(void *ud, const void *key, size_t klen, const void *val, size_t vlen) {
  last_t *l = ud;
  l->key = key, l->klen = klen, l->val = val, l->vlen = vlen;
  return 0;
}

/* The last key inserted and its value, then removes it; KeyError when empty. */
static int popitem_body(lua_State *L) {
  mud_t *u = lua_touserdata(L, 1);
  last_t l = {NULL, NULL, 0, 0};
  cr_dict_each(u->a, u->h.off, last_item, &l);
  if (!l.key) return crL_error(L, "KeyError", "DictProxy.popitem: dictionary is empty");
  lua_pushlstring(L, l.key, l.klen); /* the bytes stay valid only until the pop */
  crL_decode(L, l.key, l.klen, CRL_DECODE_NO_FUNCTIONS | CRL_DECODE_NO_HANDLES);
  mgr_push_stored(L, u->a, l.val, l.vlen);
  const char *k = lua_tostring(L, -3);
  mgr_body_check(L, cr_dict_pop(u->a, u->h.off, k, l.klen, NULL, NULL), "popitem");
  return 2;
}

/* popitem() -> k, v: removes and returns the last pair inserted, as Python. */
static int d_popitem(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_DICT);
  lua_settop(L, 1);
  return mgr_run_locked(L, u, 1, popitem_body, 0, 2, "popitem");
}

/* ---- the types ------------------------------------------------------------------------ */

static const luaL_Reg dict_methods[] = {
  {"get", d_get},     {"pop", d_pop},       {"keys", d_keys},
  {"values", d_values}, {"items", d_items}, {"update", mgr_dict_update},
  {"setdefault", d_setdefault}, {"totable", d_totable}, {"copy", d_totable},
  {"clear", d_clear}, {"popitem", d_popitem}, {NULL, NULL}};

const mgr_proxy_t mgr_dict_proxy = {dict_methods, d_index, d_newindex, d_len};
const mgr_proxy_t mgr_namespace_proxy = {NULL, ns_index, ns_newindex, d_len};
