/* corral bindings: ListProxy, a list shared by the processes of an engine
 * (made by m:list(); the Manager, the handles and what the proxies share
 * are in manager.c).
 *
 *   l[i] (1-based; l[#l+1] reads nil so ipairs stops, other indices
 *   outside 1..#l raise IndexError), l[i] = v (i in 1..#l+1), #l, ipairs,
 *   pairs; append extend insert pop remove index count sort totable clear
 *   reverse.
 *
 * Single-value operations encode before taking the lock and decode after
 * giving it back; extend, index/count/remove, sort and totable run their
 * Lua part under the lock inside lua_pcall (mgr_run_locked). */
#include <string.h>

#include "manager_int.h"

/* ---- reading elements under the lock -------------------------------------------- */

typedef struct {
  const char *p;
  size_t n;
} ptr_t;

static int ptr_sink(void *ud, const void *data, size_t len) {
  ptr_t *q = ud;
  q->p = data;
  q->n = len;
  return 0;
}

/* Pushes element i (0-based) of the locked list. */
static void push_elem(lua_State *L, mud_t *u, size_t i) {
  ptr_t q;
  mgr_body_check(L, cr_list_get(u->a, u->h.off, i, ptr_sink, &q), "get");
  mgr_push_stored(L, u->a, q.p, q.n);
}

/* ---- elements ------------------------------------------------------------------ */

/* l[i]: the element, nil for #l+1, IndexError otherwise. Methods by name. */
static int l_index(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_LIST);
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
  }
  int isint;
  lua_Integer i = lua_tointegerx(L, 2, &isint);
  if (!isint) return crL_error(L, "ValueError", "ListProxy: list index must be an integer, got %s",
                               lua_type(L, 2) == LUA_TNUMBER ? lua_tostring(L, 2) : luaL_typename(L, 2));
  mgr_sink_t s;
  mgr_sink_init(&s, L, u->a);
  mgr_lock(L, u, "get");
  size_t n = cr_list_len(u->a, u->h.off);
  if (i >= 1 && (size_t)i <= n) cr_list_get(u->a, u->h.off, (size_t)i - 1, mgr_sink, &s);
  mgr_unlock(L, u);
  if (i >= 1 && (size_t)i <= n) {
    crL__sink_finish(&s.s);
    return 1;
  }
  if ((size_t)i == n + 1 && i >= 1) return 0;
  return crL_error(L, "IndexError", "ListProxy: list index %I out of range (1..%I)", (LUAI_UACINT)i,
                   (LUAI_UACINT)n);
}

/* l[i] = v: replaces element i, or appends at #l+1. */
static int l_newindex(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_LIST);
  int isint;
  lua_Integer i = lua_tointegerx(L, 2, &isint);
  if (!isint) return crL_error(L, "ValueError", "ListProxy: list index must be an integer, got %s",
                               lua_type(L, 2) == LUA_TNUMBER ? lua_tostring(L, 2) : luaL_typename(L, 2));
  size_t n;
  const char *p = crL_encode(L, 3, "value", &n);
  mgr_lock_or_drop(L, u, p, n, "set");
  size_t len = cr_list_len(u->a, u->h.off);
  int rc;
  if (i < 1 || (size_t)i > len + 1) {
    mgr_unlock(L, u);
    crL_decode_drop(L, p, n);
    return crL_error(L, "IndexError", "ListProxy: list assignment index %I out of range (1..%I)",
                     (LUAI_UACINT)i, (LUAI_UACINT)(len + 1));
  }
  if ((size_t)i == len + 1) rc = cr_list_append(u->a, u->h.off, p, n);
  else rc = cr_list_set(u->a, u->h.off, (size_t)i - 1, p, n);
  return mgr_store_result(L, u, rc, p, n, "set");
}

static int l_len(lua_State *L) { return mgr_len(L, mgr_check(L, 1, CR_MANAGED_LIST), cr_list_len); }

static int l_append(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_LIST);
  crL_checkany(L, 2);
  size_t n;
  const char *p = crL_encode(L, 2, "value", &n);
  mgr_lock_or_drop(L, u, p, n, "append");
  int rc = cr_list_append(u->a, u->h.off, p, n);
  return mgr_store_result(L, u, rc, p, n, "append");
}

static int l_insert(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_LIST);
  int isint;
  lua_Integer i = lua_tointegerx(L, 2, &isint);
  if (!isint) return crL_error(L, "ValueError", "ListProxy.insert: position must be an integer, got %s",
                               luaL_typename(L, 2));
  crL_checkany(L, 3);
  size_t n;
  const char *p = crL_encode(L, 3, "value", &n);
  mgr_lock_or_drop(L, u, p, n, "insert");
  size_t len = cr_list_len(u->a, u->h.off);
  if (i < 1 || (size_t)i > len + 1) {
    mgr_unlock(L, u);
    crL_decode_drop(L, p, n);
    return crL_error(L, "IndexError", "ListProxy.insert: position %I out of range (1..%I)", (LUAI_UACINT)i,
                     (LUAI_UACINT)(len + 1));
  }
  int rc = cr_list_insert(u->a, u->h.off, (size_t)i - 1, p, n);
  return mgr_store_result(L, u, rc, p, n, "insert");
}

/* pop([i]): removes and returns element i (default the last). */
static int l_pop(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_LIST);
  int has_i = !lua_isnoneornil(L, 2);
  lua_Integer i = 0;
  if (has_i) {
    int isint;
    i = lua_tointegerx(L, 2, &isint);
    if (!isint) return crL_error(L, "ValueError", "ListProxy.pop: index must be an integer, got %s",
                                 luaL_typename(L, 2));
  }
  mgr_sink_t s;
  mgr_sink_init(&s, L, u->a);
  mgr_lock(L, u, "pop");
  size_t len = cr_list_len(u->a, u->h.off);
  if (!has_i) i = (lua_Integer)len;
  int rc = 0;
  if (len == 0) rc = 1;
  else if (i < 1 || (size_t)i > len) rc = 2;
  else rc = cr_list_pop(u->a, u->h.off, (size_t)i - 1, mgr_sink, &s);
  mgr_unlock(L, u);
  if (rc == 1) return crL_error(L, "IndexError", "ListProxy.pop: pop from empty list");
  if (rc == 2)
    return crL_error(L, "IndexError", "ListProxy.pop: index %I out of range (1..%I)", (LUAI_UACINT)i,
                     (LUAI_UACINT)len);
  if (rc < 0) return mgr_op_error(L, u, rc, "pop");
  crL__sink_finish(&s.s);
  return 1;
}

/* ---- the whole list: totable, extend ---------------------------------------------- */

int mgr_list_totable_body(lua_State *L) {
  mud_t *u = lua_touserdata(L, 1);
  size_t n = cr_list_len(u->a, u->h.off);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    push_elem(L, u, i);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* Pushes an array of the values of the proxy at arg (a dict or namespace
 * gives its keys, as in Python). */
static void snapshot_list(lua_State *L, int arg) {
  mud_t *u = mgr_check(L, arg, 0);
  mgr_snapshot_flat(L, arg, u);
  if (u->type != CR_MANAGED_LIST) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    lua_createtable(L, (int)(n / 2), 0);
    for (lua_Integer k = 1; k <= n; k += 2) {
      lua_rawgeti(L, -2, k);
      lua_rawseti(L, -2, (k + 1) / 2);
    }
    lua_remove(L, -2);
  }
}

/* extend(array table or ListProxy): appends each value, atomically. */
static int extend_body(lua_State *L) {
  mud_t *u = lua_touserdata(L, 1);
  /* 2: the table of encoded values (buffers) */
  lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
  for (lua_Integer k = 1; k <= n; k++) {
    lua_rawgeti(L, 2, k);
    size_t len;
    const char *p = lua_tolstring(L, -1, &len);
    int rc = cr_list_append(u->a, u->h.off, p, len);
    lua_pop(L, 1);
    if (rc < 0) {
      lua_pushinteger(L, k); /* the first value not stored */
      lua_setfield(L, 2, "failed_at");
      mgr_body_check(L, rc, "extend");
    }
    lua_pushboolean(L, 1);
    lua_rawseti(L, 2, k); /* stored: its references belong to the list */
  }
  return 0;
}

/* Encodes the values of the array at arg into a new table of strings on
 * top (each a message holding its own references). */
static void encode_all(lua_State *L, int arg, const char *what) {
  lua_Integer n = luaL_len(L, arg);
  lua_createtable(L, (int)(n > 0 ? n : 0), 0);
  int t = lua_gettop(L);
  for (lua_Integer k = 1; k <= n; k++) {
    lua_geti(L, arg, k);
    size_t len;
    const char *p = crL_encode(L, -1, what, &len);
    lua_pushlstring(L, p, len);
    lua_rawseti(L, t, k);
    lua_pop(L, 2);
  }
}

int mgr_list_extend(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_LIST);
  lua_settop(L, 2);
  mud_t *other = lua_type(L, 2) == LUA_TUSERDATA ? lua_touserdata(L, 2) : NULL;
  if (other && crL_tohandle(L, 2) && other->h.kind == CR_OBJ_MANAGED) {
    snapshot_list(L, 2);
    lua_replace(L, 2);
  } else if (!lua_istable(L, 2)) {
    return crL_error(L, "ValueError", "ListProxy.extend: expected an array table or a ListProxy, got %s",
                     luaL_typename(L, 2));
  }
  encode_all(L, 2, "value");
  int t = lua_gettop(L);
  lua_pushcfunction(L, extend_body);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, t);
  int rc = cr_managed_lock(u->a, u->h.off);
  if (rc < 0) {
    mgr_drop_all(L, t);
    return mgr_op_error(L, u, rc, "extend");
  }
  int st = lua_pcall(L, 2, 0, 0);
  mgr_unlock(L, u);
  if (st != LUA_OK) {
    mgr_drop_all(L, t);
    lua_error(L);
  }
  return 0;
}

static int l_totable(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_LIST);
  lua_settop(L, 1);
  return mgr_run_locked(L, u, 1, mgr_list_totable_body, 0, 1, "totable");
}

/* ---- index, count, remove ---------------------------------------------------- */

/* Python's ==: numbers by value, strings by content, tables by content
 * (recursively), handles by the object they name. */
static int deep_eq(lua_State *L, int i, int j, int depth) {
  i = lua_absindex(L, i);
  j = lua_absindex(L, j);
  int ti = lua_type(L, i), tj = lua_type(L, j);
  if (ti != tj) return 0;
  if (ti == LUA_TUSERDATA) {
    crL_handle_t *a = crL_tohandle(L, i), *b = crL_tohandle(L, j);
    if (a && b) return a->off == b->off;
    return lua_rawequal(L, i, j);
  }
  if (ti != LUA_TTABLE) return lua_rawequal(L, i, j);
  if (lua_rawequal(L, i, j)) return 1;
  if (depth > 100) return 0;
  luaL_checkstack(L, 6, "deep_eq");
  size_t ni = 0, nj = 0;
  lua_pushnil(L);
  while (lua_next(L, i)) {
    ni++;
    lua_pushvalue(L, -2);
    lua_rawget(L, j);
    int eq = deep_eq(L, -1, -2, depth + 1);
    lua_pop(L, 2);
    if (!eq) {
      lua_pop(L, 1);
      return 0;
    }
  }
  lua_pushnil(L);
  while (lua_next(L, j)) {
    nj++;
    lua_pop(L, 1);
  }
  return ni == nj;
}

/* Encodings of a value to compare stored bytes against: the value's own,
 * and for a number with an integer value its other representation (1 and
 * 1.0 are equal). Tables are compared after decoding. */
typedef struct {
  int deep;
  int n;
  const char *p[2];
  size_t len[2];
} needle_t;

/* Index of the first element equal to the value at 2 within [from, to),
 * or -1; with `count`, the number of equal elements instead. */
static lua_Integer find_in(lua_State *L, mud_t *u, needle_t *nd, size_t from, size_t to, int count) {
  lua_Integer hits = 0;
  for (size_t i = from; i < to; i++) {
    ptr_t q;
    mgr_body_check(L, cr_list_get(u->a, u->h.off, i, ptr_sink, &q), "index");
    int eq = 0;
    if (nd->deep) {
      mgr_push_stored(L, u->a, q.p, q.n);
      eq = deep_eq(L, -1, 2, 0);
      lua_pop(L, 1);
    } else {
      for (int k = 0; k < nd->n && !eq; k++) eq = q.n == nd->len[k] && memcmp(q.p, nd->p[k], q.n) == 0;
    }
    if (eq) {
      if (!count) return (lua_Integer)i;
      hits++;
    }
  }
  return count ? hits : -1;
}

/* body(list, value, mode, from, to, needle*): mode 0 index, 1 count, 2 remove. */
static int find_body(lua_State *L) {
  mud_t *u = lua_touserdata(L, 1);
  int mode = (int)lua_tointeger(L, 3);
  needle_t *nd = lua_touserdata(L, 6);
  size_t len = cr_list_len(u->a, u->h.off);
  lua_Integer from = lua_tointeger(L, 4), to = lua_isnil(L, 5) ? (lua_Integer)len : lua_tointeger(L, 5);
  if (from < 1) from = 1;
  if (to > (lua_Integer)len) to = (lua_Integer)len;
  if (from > to) {
    lua_pushinteger(L, mode == 1 ? 0 : -1);
    return 1;
  }
  lua_Integer r = find_in(L, u, nd, (size_t)from - 1, (size_t)to, mode == 1);
  if (mode == 2 && r >= 0) mgr_body_check(L, cr_list_pop(u->a, u->h.off, (size_t)r, NULL, NULL), "remove");
  lua_pushinteger(L, r);
  return 1;
}

static int find_common(lua_State *L, int mode, const char *what) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_LIST);
  crL_checkany(L, 2);
  lua_settop(L, 4);
  lua_Integer from = crL_optinteger(L, 3, 1);
  needle_t nd;
  memset(&nd, 0, sizeof nd);
  int tv = lua_type(L, 2);
  int first_enc = 0;
  if (tv == LUA_TTABLE) {
    nd.deep = 1;
  } else {
    first_enc = lua_gettop(L) + 1;
    nd.p[0] = crL_encode(L, 2, "value", &nd.len[0]);
    nd.n = 1;
    if (tv == LUA_TNUMBER) {
      lua_Integer iv;
      if (lua_isinteger(L, 2)) lua_pushnumber(L, (lua_Number)lua_tointeger(L, 2));
      else if (lua_numbertointeger(lua_tonumber(L, 2), &iv) && (double)iv == lua_tonumber(L, 2))
        lua_pushinteger(L, iv);
      else lua_pushnil(L);
      if (!lua_isnil(L, -1) && lua_tonumber(L, -1) == lua_tonumber(L, 2)) {
        nd.p[1] = crL_encode(L, -1, "value", &nd.len[1]);
        nd.n = 2;
      }
    }
  }
  int top = lua_gettop(L);
  lua_pushcfunction(L, find_body);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushinteger(L, mode);
  lua_pushinteger(L, from);
  lua_pushvalue(L, 4);
  lua_pushlightuserdata(L, &nd);
  int rc = cr_managed_lock(u->a, u->h.off);
  int st = LUA_OK;
  if (rc == 0) {
    st = lua_pcall(L, 6, 1, 0);
    mgr_unlock(L, u);
  }
  /* the needle's encodings hold references of their own (a handle) */
  if (first_enc)
    for (int k = 0; k < nd.n; k++) crL_decode_drop(L, nd.p[k], nd.len[k]);
  if (rc < 0) return mgr_op_error(L, u, rc, what);
  if (st != LUA_OK) lua_error(L);
  lua_Integer r = lua_tointeger(L, -1);
  (void)top;
  if (mode == 1) {
    lua_pushinteger(L, r);
    return 1;
  }
  if (r < 0) {
    luaL_tolstring(L, 2, NULL);
    return crL_error(L, "ValueError", "ListProxy.%s: %s is not in list", what, lua_tostring(L, -1));
  }
  if (mode == 2) return 0;
  lua_pushinteger(L, r + 1);
  return 1;
}

/* index(v [, from [, to]]): 1-based position of the first v in from..to. */
static int l_index_of(lua_State *L) { return find_common(L, 0, "index"); }
static int l_count(lua_State *L) { return find_common(L, 1, "count"); }
static int l_remove(lua_State *L) {
  lua_settop(L, 2);
  return find_common(L, 2, "remove");
}

/* ---- sort: a stable merge sort, the comparator called under the lock ---- */

typedef struct {
  lua_State *L;
  int vals;  /* stack index of the decoded values */
  int cmp;   /* stack index of the comparator, 0 for `<` */
} sorter_t;

static int less(sorter_t *s, uint32_t a, uint32_t b) {
  lua_State *L = s->L;
  if (s->cmp) {
    lua_pushvalue(L, s->cmp);
    lua_rawgeti(L, s->vals, (lua_Integer)a + 1);
    lua_rawgeti(L, s->vals, (lua_Integer)b + 1);
    lua_call(L, 2, 1);
    int r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
  }
  lua_rawgeti(L, s->vals, (lua_Integer)a + 1);
  lua_rawgeti(L, s->vals, (lua_Integer)b + 1);
  int r = lua_compare(L, -2, -1, LUA_OPLT);
  lua_pop(L, 2);
  return r;
}

static void merge_sort(sorter_t *s, uint32_t *v, uint32_t *tmp, size_t n) {
  for (size_t w = 1; w < n; w *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * w) {
      size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) tmp[k++] = less(s, v[j], v[i]) ? v[j++] : v[i++];
      while (i < mid) tmp[k++] = v[i++];
      while (j < hi) tmp[k++] = v[j++];
    }
    memcpy(v, tmp, n * sizeof *v);
  }
}

static int sort_body(lua_State *L) {
  mud_t *u = lua_touserdata(L, 1);
  size_t n = cr_list_len(u->a, u->h.off);
  if (n < 2) return 0;
  if (n > UINT32_MAX) return crL_error(L, "ValueError", "ListProxy.sort: list too long");
  mgr_list_totable_body(L);
  sorter_t s = {L, lua_gettop(L), lua_isnil(L, 2) ? 0 : 2};
  uint32_t *perm = lua_newuserdatauv(L, 2 * n * sizeof(uint32_t), 0);
  for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
  merge_sort(&s, perm, perm + n, n);
  mgr_body_check(L, cr_list_permute(u->a, u->h.off, perm, n), "sort");
  return 0;
}

/* sort([cmp]): in place, stable; cmp(a, b) true when a goes before b. */
static int l_sort(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_LIST);
  lua_settop(L, 2);
  if (!lua_isnil(L, 2)) crL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  return mgr_run_locked(L, u, 1, sort_body, 1, 0, "sort");
}

/* ---- clear, reverse ------------------------------------------------------------------ */

/* Removes every element, last first: each removal is one published step,
 * so a process killed in the middle leaves the elements not yet removed. */
static int clear_body(lua_State *L) {
  mud_t *u = lua_touserdata(L, 1);
  for (size_t n = cr_list_len(u->a, u->h.off); n > 0; n--)
    mgr_body_check(L, cr_list_pop(u->a, u->h.off, n - 1, NULL, NULL), "clear");
  return 0;
}

static int l_clear(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_LIST);
  lua_settop(L, 1);
  return mgr_run_locked(L, u, 1, clear_body, 0, 0, "clear");
}

static int reverse_body(lua_State *L) {
  mud_t *u = lua_touserdata(L, 1);
  size_t n = cr_list_len(u->a, u->h.off);
  if (n < 2) return 0;
  if (n > UINT32_MAX) return crL_error(L, "ValueError", "ListProxy.reverse: list too long");
  uint32_t *perm = lua_newuserdatauv(L, n * sizeof(uint32_t), 0);
  for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)(n - 1 - i);
  mgr_body_check(L, cr_list_permute(u->a, u->h.off, perm, n), "reverse");
  return 0;
}

/* reverse(): in place, as one step. */
static int l_reverse(lua_State *L) {
  mud_t *u = mgr_check(L, 1, CR_MANAGED_LIST);
  lua_settop(L, 1);
  return mgr_run_locked(L, u, 1, reverse_body, 0, 0, "reverse");
}

/* ---- the type ----------------------------------------------------------------------- */

static const luaL_Reg list_methods[] = {
  {"append", l_append}, {"extend", mgr_list_extend}, {"insert", l_insert}, {"pop", l_pop},
  {"remove", l_remove}, {"index", l_index_of}, {"count", l_count}, {"sort", l_sort},
  {"totable", l_totable}, {"clear", l_clear},   {"reverse", l_reverse}, {NULL, NULL}};

const mgr_proxy_t mgr_list_proxy = {list_methods, l_index, l_newindex, l_len};
