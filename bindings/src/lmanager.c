/* corral bindings: Manager and its proxies (engine: corral/managed.h, which
 * explains why the state lives in the shared arena rather than in a server
 * process, and how it survives a client killed mid-operation).
 *
 *   mp.Manager()                 a Manager; `local m <close> = mp.Manager()`
 *   m:list([init])               ListProxy (init: array table or ListProxy)
 *   m:dict([init])               DictProxy (init: table or DictProxy/Namespace)
 *   m:Namespace()                Namespace
 *   m:Queue(...), m:JoinableQueue(...), m:Lock(), m:RLock(),
 *   m:Semaphore(...), m:BoundedSemaphore(...), m:Event(), m:Condition(...),
 *   m:Barrier(...), m:Value(...), m:Array(...)
 *                                the ordinary objects, registered with the
 *                                manager: shutdown closes its queues and
 *                                drops its references to the others
 *   m:shutdown()                 (also __close) every proxy of this manager,
 *                                in every process, then raises Closed
 *
 * Proxies behave like tables and have Python's methods:
 *   ListProxy  l[i] (1-based; l[#l+1] reads nil so ipairs stops, other
 *              indices outside 1..#l raise IndexError), l[i] = v (i in
 *              1..#l+1), #l, ipairs, pairs; append extend insert pop remove
 *              index count sort totable
 *   DictProxy  d[k], d[k] = v, d[k] = nil deletes, #d, pairs (insertion
 *              order); get pop keys values items update setdefault totable.
 *              A method name read with d.name gives the method: data stored
 *              under such a key is read with d:get(name).
 *   Namespace  ns.field, ns.field = v (nil deletes), pairs(ns); no methods.
 * tostring(proxy) shows the contents as Python prints them.
 *
 * Values are stored as codec messages (copies, nested tables included). A
 * value holding handles (a proxy stored in a proxy, a Queue...) holds one
 * reference per handle, as a message in a queue does: reading it takes new
 * references for the handles it makes (under the lock, while the stored
 * value keeps the objects alive); overwriting or removing it hands its
 * bytes to the engine's drop hook, which queues the references here, and
 * they are released (through handles adopted and finalised at once) after
 * the lock is given back.
 *
 * Dict keys: strings, numbers (not NaN) and booleans, each encoded to a
 * canonical byte string: a type byte then the bytes of the value; a float
 * with an integer value is the integer (Lua's own rule: d[1] and d[1.0] are
 * one key). Anything else raises ValueError naming the type.
 *
 * Locking discipline: single-value operations encode before taking the lock
 * and decode after giving it back, so no Lua runs under the lock. Compound
 * ones (sort with a comparator, remove, snapshots) run their Lua part under
 * the lock inside lua_pcall, so an error cannot leave it held; the engine's
 * CR_ESTATE catches a comparator that calls back into the same proxy. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "corral_lua.h"

#define MANAGER_MT "corral.Manager"
#define LIST_MT    "corral.ListProxy"
#define DICT_MT    "corral.DictProxy"
#define NS_MT      "corral.Namespace"
#define CORE_KEY   "corral.core" /* registry: the module's core table (codec.c) */

/* The codec's message header (see codec.c): MAGIC VERSION, then, when the
 * message names handles, the HANDLES tag, a varint count and a varint
 * (kind, offset) pair per handle. */
#define CODEC_MAGIC   0xCB
#define CODEC_HANDLES 0x10

#define SMALL 256 /* values up to this size are copied out of the lock */

typedef struct {
  crL_handle_t h;
  cr_arena_t *a;
  int type; /* cr_managed_type_t */
} mud_t;

static cr_arena_t *arena(lua_State *L) { return cr_engine_arena(crL_engine(L)); }

static const char *mt_of(int type) {
  switch (type) {
    case CR_MANAGED_MANAGER: return MANAGER_MT;
    case CR_MANAGED_LIST: return LIST_MT;
    case CR_MANAGED_DICT: return DICT_MT;
    default: return NS_MT;
  }
}

/* ---- handles inside stored values ------------------------------------------------ */

static uint64_t varint(const unsigned char **p, const unsigned char *end, int *ok) {
  uint64_t v = 0;
  for (int shift = 0; *p < end && shift < 64; shift += 7) {
    unsigned char c = *(*p)++;
    v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) return v;
  }
  *ok = 0;
  return 0;
}

/* Calls fn for each (kind, offset) in the handle section of a message. */
static void each_handle(const void *data, size_t len, void (*fn)(cr_arena_t *, uint32_t, cr_off_t),
                        cr_arena_t *a) {
  const unsigned char *p = data, *end = p + len;
  if (len < 3 || p[0] != CODEC_MAGIC || p[2] != CODEC_HANDLES) return;
  p += 3;
  int ok = 1;
  uint64_t n = varint(&p, end, &ok);
  for (uint64_t i = 0; ok && i < n; i++) {
    uint64_t kind = varint(&p, end, &ok);
    uint64_t off = varint(&p, end, &ok);
    if (ok) fn(a, (uint32_t)kind, (cr_off_t)off);
  }
}

static void retain_one(cr_arena_t *a, uint32_t kind, cr_off_t off) {
  (void)kind;
  cr_obj_retain(a, off);
}

/* References dropped by the engine, released after the lock is given back. */
typedef struct {
  uint32_t kind;
  cr_off_t off;
} pend_t;
static pend_t *pend;
static size_t npend, cpend;

static void pend_one(cr_arena_t *a, uint32_t kind, cr_off_t off) {
  (void)a;
  if (npend == cpend) {
    size_t nc = cpend ? cpend * 2 : 16;
    pend_t *np = realloc(pend, nc * sizeof *np);
    if (!np) return; /* out of memory: that reference leaks */
    pend = np;
    cpend = nc;
  }
  pend[npend].kind = kind;
  pend[npend].off = off;
  npend++;
}

/* cr_managed_drop_fn: runs under the engine's locks, so it only records. */
static void on_drop(const void *data, size_t len) {
  cr_engine_t *e = cr_engine_default();
  if (e) each_handle(data, len, pend_one, cr_engine_arena(e));
}

/* Releases the queued references: each is adopted by a handle of its type
 * whose finaliser runs at once (the type knows how to release it). */
static void flush(lua_State *L) {
  while (npend) {
    pend_t p = pend[--npend];
    if (crL_pushhandle_adopt(L, (cr_obj_kind_t)p.kind, p.off) == 0) {
      if (luaL_getmetafield(L, -1, "__gc") != LUA_TNIL) {
        lua_pushvalue(L, -2);
        lua_pcall(L, 1, 0, 0) == LUA_OK ? (void)0 : lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
  }
}

/* Drops an encoded value that will not be stored. */
static void drop_encoded(lua_State *L, const char *p, size_t n) {
  if (n >= 3 && (unsigned char)p[2] == CODEC_HANDLES) crL_decode_drop(L, p, n);
}

/* Pushes a stored value (lock held, or a private copy whose references
 * were already taken when `retained`). */
static void push_value(lua_State *L, cr_arena_t *a, const void *p, size_t n, int retained) {
  if (!retained) each_handle(p, n, retain_one, a);
  crL_decode(L, p, n, 0);
}

/* ---- reading one value without running Lua under the lock ------------------- */

typedef struct {
  lua_State *L;
  cr_arena_t *a;
  int status;   /* big value: lua_pcall status, value or error on top */
  int small;    /* small value: copied to buf, references taken */
  size_t len;
  char buf[SMALL];
} rsink_t;

static int decode_thunk(lua_State *L) {
  cr_arena_t *a = lua_touserdata(L, 1);
  const char *p = lua_touserdata(L, 2);
  size_t n = (size_t)lua_tointeger(L, 3);
  push_value(L, a, p, n, 0);
  return 1;
}

/* cr_managed_sink_fn: a small value is copied aside (its references
 * taken); a large one is decoded on the spot under lua_pcall. */
static int rsink(void *ud, const void *data, size_t len) {
  rsink_t *s = ud;
  if (len <= SMALL) {
    memcpy(s->buf, data, len);
    s->len = len;
    s->small = 1;
    each_handle(data, len, retain_one, s->a);
    return 0;
  }
  lua_State *L = s->L;
  lua_pushcfunction(L, decode_thunk);
  lua_pushlightuserdata(L, s->a);
  lua_pushlightuserdata(L, (void *)data);
  lua_pushinteger(L, (lua_Integer)len);
  s->status = lua_pcall(L, 3, 1, 0);
  return 0;
}

/* After the lock is given back: the value on top, or the decoder's error. */
static void rsink_finish(rsink_t *s) {
  if (s->small) push_value(s->L, s->a, s->buf, s->len, 1);
  else if (s->status != LUA_OK) lua_error(s->L);
}

static void rsink_init(rsink_t *s, lua_State *L, cr_arena_t *a) {
  s->L = L;
  s->a = a;
  s->status = LUA_OK;
  s->small = 0;
}

/* ---- handles -------------------------------------------------------------------- */

static void init_managed(lua_State *L, crL_handle_t *h) {
  mud_t *u = (mud_t *)h;
  u->a = arena(L);
  u->type = cr_managed_type(u->a, h->off);
}

static const char *managed_tname(cr_arena_t *a, cr_off_t off) { return mt_of(cr_managed_type(a, off)); }

static const crL_handle_class_t managed_class = {sizeof(mud_t), 0, managed_tname, init_managed};

static void push_managed(lua_State *L, cr_off_t off) { crL_handle_new(L, CR_OBJ_MANAGED, off); }

static int m_gc(lua_State *L) {
  mud_t *u = lua_touserdata(L, 1);
  if (u && u->h.off) {
    crL_handle_release(L, &u->h);
    flush(L);
  }
  return 0;
}

/* A forked child leaves the references waiting to be dropped to its parent,
 * which drops its own. */
static void fork_child(void *arg) {
  (void)arg;
  npend = 0;
}

static const char *display(int type) { return cr_managed_type_name(type); }

/* The open handle of `type` at arg (type 0: any proxy). */
static mud_t *check(lua_State *L, int arg, int type) {
  mud_t *u = lua_touserdata(L, arg);
  int ok = 0;
  if (u && lua_getmetatable(L, arg)) {
    if (type) {
      luaL_getmetatable(L, mt_of(type));
      ok = lua_rawequal(L, -1, -2);
      lua_pop(L, 2);
    } else {
      lua_getfield(L, -1, "__corral_kind");
      ok = lua_tointeger(L, -1) == CR_OBJ_MANAGED;
      lua_pop(L, 2);
    }
  }
  if (!ok) {
    luaL_typeerror(L, arg, type ? display(type) : "proxy");
    return NULL;
  }
  if (!u->h.off) crL_error_closed(L, display(u->type));
  return u;
}

static int op_error(lua_State *L, mud_t *u, int rc, const char *what) {
  if (rc == CR_ECLOSED)
    return crL_error(L, "Closed", "%s.%s: the %s's Manager was shut down", display(u->type), what,
                     display(u->type));
  if (rc == CR_ESTATE)
    return crL_error(L, "StateError",
                     "%s.%s: this process is already inside an operation on this %s "
                     "(a sort comparator using it?)",
                     display(u->type), what, display(u->type));
  lua_pushfstring(L, "%s.%s", display(u->type), what);
  return crL_error_code(L, rc, lua_tostring(L, -1));
}

static void lock(lua_State *L, mud_t *u, const char *what) {
  int rc = cr_managed_lock(u->a, u->h.off);
  if (rc < 0) op_error(L, u, rc, what);
}

static void unlock(lua_State *L, mud_t *u) {
  cr_managed_unlock(u->a, u->h.off);
  flush(L);
}

/* Calls body(proxy, args...) with the lock held, under lua_pcall; gives
 * the lock back and raises the body's error if any. The nargs arguments
 * are on top of the stack (the proxy is passed first). */
static int run_locked(lua_State *L, mud_t *u, int arg, lua_CFunction body, int nargs, int nres,
                      const char *what) {
  lua_pushcfunction(L, body);
  lua_pushvalue(L, arg);
  lua_rotate(L, -(nargs + 2), 2);
  lock(L, u, what);
  int st = lua_pcall(L, nargs + 1, nres, 0);
  unlock(L, u);
  if (st != LUA_OK) lua_error(L);
  return nres;
}

/* Raises for an engine error inside a locked body. */
static void body_check(lua_State *L, int rc, const char *what) {
  if (rc < 0) {
    mud_t *u = lua_touserdata(L, 1);
    op_error(L, u, rc, what);
  }
}

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
  body_check(L, cr_list_get(u->a, u->h.off, i, ptr_sink, &q), "get");
  push_value(L, u->a, q.p, q.n, 0);
}

/* ---- keys ------------------------------------------------------------------------ */

typedef struct {
  char buf[SMALL + 1];
  const char *p;
  size_t n;
} mkey_t;

/* Encodes the key at idx (see the header); raises ValueError for a bad
 * one. A long string key is pushed on the stack as a Lua string (the
 * caller's stack may grow by one). */
static void key_encode(lua_State *L, int idx, mkey_t *k, const char *what) {
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      if (n < SMALL) {
        k->buf[0] = 's';
        memcpy(k->buf + 1, s, n);
        k->p = k->buf;
        k->n = n + 1;
      } else {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addchar(&b, 's');
        luaL_addlstring(&b, s, n);
        luaL_pushresult(&b);
        k->p = lua_tolstring(L, -1, &k->n);
      }
      return;
    }
    case LUA_TNUMBER: {
      lua_Integer i;
      double d = lua_tonumber(L, idx);
      if (lua_isinteger(L, idx)) i = lua_tointeger(L, idx);
      else if (isnan(d)) {
        crL_error(L, "ValueError", "%s: NaN cannot be a key", what);
        return;
      } else if (!lua_numbertointeger(d, &i) || (double)i != d) {
        k->buf[0] = 'f';
        memcpy(k->buf + 1, &d, sizeof d);
        k->p = k->buf;
        k->n = 1 + sizeof d;
        return;
      }
      k->buf[0] = 'i';
      memcpy(k->buf + 1, &i, sizeof i);
      k->p = k->buf;
      k->n = 1 + sizeof i;
      return;
    }
    case LUA_TBOOLEAN:
      k->buf[0] = lua_toboolean(L, idx) ? 'T' : 'F';
      k->p = k->buf;
      k->n = 1;
      return;
    default:
      crL_error(L, "ValueError", "%s: a key must be a string, number or boolean, not a %s", what,
                luaL_typename(L, idx));
  }
}

static void key_push(lua_State *L, const char *p, size_t n) {
  switch (n ? p[0] : 0) {
    case 's': lua_pushlstring(L, p + 1, n - 1); break;
    case 'i': {
      lua_Integer i;
      memcpy(&i, p + 1, sizeof i);
      lua_pushinteger(L, i);
      break;
    }
    case 'f': {
      double d;
      memcpy(&d, p + 1, sizeof d);
      lua_pushnumber(L, d);
      break;
    }
    case 'T': lua_pushboolean(L, 1); break;
    case 'F': lua_pushboolean(L, 0); break;
    default: lua_pushnil(L); break;
  }
}

/* ---- equality and display ----------------------------------------------------------- */

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

/* Display, as Python prints: pieces are appended to the table at `out`
 * (no luaL_Buffer, whose stack slot would have to stay on top). */
static void put(lua_State *L, int out, const char *s) {
  lua_pushstring(L, s);
  lua_rawseti(L, out, (lua_Integer)lua_rawlen(L, out) + 1);
}

static void repr_string(lua_State *L, int out, const char *s, size_t n) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '\'');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\'' || c == '\\') {
      luaL_addchar(&b, '\\');
      luaL_addchar(&b, (char)c);
    } else if (c == '\n') {
      luaL_addstring(&b, "\\n");
    } else if (c < 32 || c == 127) {
      char esc[8];
      snprintf(esc, sizeof esc, "\\x%02x", c);
      luaL_addstring(&b, esc);
    } else {
      luaL_addchar(&b, (char)c);
    }
  }
  luaL_addchar(&b, '\'');
  luaL_pushresult(&b);
  lua_rawseti(L, out, (lua_Integer)lua_rawlen(L, out) + 1);
}

static void repr(lua_State *L, int out, int idx, int depth) {
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 8, "repr");
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      repr_string(L, out, s, n);
      return;
    }
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, idx));
      } else {
        char num[64];
        double d = lua_tonumber(L, idx);
        if (d == floor(d) && fabs(d) < 1e16) snprintf(num, sizeof num, "%.1f", d);
        else snprintf(num, sizeof num, "%.17g", d);
        lua_pushstring(L, num);
      }
      lua_rawseti(L, out, (lua_Integer)lua_rawlen(L, out) + 1);
      return;
    case LUA_TTABLE: {
      if (depth > 8) {
        put(L, out, "{...}");
        return;
      }
      lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        count++;
        lua_pop(L, 1);
      }
      if (count == n) {
        put(L, out, "[");
        for (lua_Integer i = 1; i <= n; i++) {
          if (i > 1) put(L, out, ", ");
          lua_rawgeti(L, idx, i);
          repr(L, out, -1, depth + 1);
          lua_pop(L, 1);
        }
        put(L, out, "]");
        return;
      }
      put(L, out, "{");
      int first = 1;
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        if (!first) put(L, out, ", ");
        first = 0;
        repr(L, out, -2, depth + 1);
        put(L, out, ": ");
        repr(L, out, -1, depth + 1);
        lua_pop(L, 1);
      }
      put(L, out, "}");
      return;
    }
    case LUA_TNIL: put(L, out, "None"); return;
    case LUA_TBOOLEAN: put(L, out, lua_toboolean(L, idx) ? "True" : "False"); return;
    default:
      luaL_tolstring(L, idx, NULL);
      lua_rawseti(L, out, (lua_Integer)lua_rawlen(L, out) + 1);
      return;
  }
}

/* ---- ListProxy ------------------------------------------------------------------ */

/* l[i]: the element, nil for #l+1, IndexError otherwise. Methods by name. */
static int l_index(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_LIST);
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
  }
  int isint;
  lua_Integer i = lua_tointegerx(L, 2, &isint);
  if (!isint) return crL_error(L, "ValueError", "ListProxy: list index must be an integer, got %s",
                               lua_type(L, 2) == LUA_TNUMBER ? lua_tostring(L, 2) : luaL_typename(L, 2));
  rsink_t s;
  rsink_init(&s, L, u->a);
  lock(L, u, "get");
  size_t n = cr_list_len(u->a, u->h.off);
  if (i >= 1 && (size_t)i <= n) cr_list_get(u->a, u->h.off, (size_t)i - 1, rsink, &s);
  unlock(L, u);
  if (i >= 1 && (size_t)i <= n) {
    rsink_finish(&s);
    return 1;
  }
  if ((size_t)i == n + 1 && i >= 1) return 0;
  return crL_error(L, "IndexError", "ListProxy: list index %I out of range (1..%I)", (LUAI_UACINT)i,
                   (LUAI_UACINT)n);
}

/* Stores an encoded value; the encoding's references go to the list, or
 * are dropped when the store fails. */
static int store_result(lua_State *L, mud_t *u, int rc, const char *p, size_t n, const char *what) {
  unlock(L, u);
  if (rc < 0) {
    drop_encoded(L, p, n);
    if (rc == CR_EINVAL)
      return crL_error(L, "IndexError", "%s.%s: list index out of range", display(u->type), what);
    return op_error(L, u, rc, what);
  }
  return 0;
}

static int lock_or_drop(lua_State *L, mud_t *u, const char *p, size_t n, const char *what) {
  int rc = cr_managed_lock(u->a, u->h.off);
  if (rc < 0) {
    drop_encoded(L, p, n);
    op_error(L, u, rc, what);
  }
  return 0;
}

/* l[i] = v: replaces element i, or appends at #l+1. */
static int l_newindex(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_LIST);
  int isint;
  lua_Integer i = lua_tointegerx(L, 2, &isint);
  if (!isint) return crL_error(L, "ValueError", "ListProxy: list index must be an integer, got %s",
                               lua_type(L, 2) == LUA_TNUMBER ? lua_tostring(L, 2) : luaL_typename(L, 2));
  size_t n;
  const char *p = crL_encode(L, 3, "value", &n);
  lock_or_drop(L, u, p, n, "set");
  size_t len = cr_list_len(u->a, u->h.off);
  int rc;
  if (i < 1 || (size_t)i > len + 1) {
    unlock(L, u);
    drop_encoded(L, p, n);
    return crL_error(L, "IndexError", "ListProxy: list assignment index %I out of range (1..%I)",
                     (LUAI_UACINT)i, (LUAI_UACINT)(len + 1));
  }
  if ((size_t)i == len + 1) rc = cr_list_append(u->a, u->h.off, p, n);
  else rc = cr_list_set(u->a, u->h.off, (size_t)i - 1, p, n);
  return store_result(L, u, rc, p, n, "set");
}

static int l_len(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_LIST);
  lock(L, u, "len");
  size_t n = cr_list_len(u->a, u->h.off);
  unlock(L, u);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int l_append(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_LIST);
  luaL_checkany(L, 2);
  size_t n;
  const char *p = crL_encode(L, 2, "value", &n);
  lock_or_drop(L, u, p, n, "append");
  int rc = cr_list_append(u->a, u->h.off, p, n);
  return store_result(L, u, rc, p, n, "append");
}

static int l_insert(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_LIST);
  int isint;
  lua_Integer i = lua_tointegerx(L, 2, &isint);
  if (!isint) return crL_error(L, "ValueError", "ListProxy.insert: position must be an integer, got %s",
                               luaL_typename(L, 2));
  luaL_checkany(L, 3);
  size_t n;
  const char *p = crL_encode(L, 3, "value", &n);
  lock_or_drop(L, u, p, n, "insert");
  size_t len = cr_list_len(u->a, u->h.off);
  if (i < 1 || (size_t)i > len + 1) {
    unlock(L, u);
    drop_encoded(L, p, n);
    return crL_error(L, "IndexError", "ListProxy.insert: position %I out of range (1..%I)", (LUAI_UACINT)i,
                     (LUAI_UACINT)(len + 1));
  }
  int rc = cr_list_insert(u->a, u->h.off, (size_t)i - 1, p, n);
  return store_result(L, u, rc, p, n, "insert");
}

/* pop([i]): removes and returns element i (default the last). */
static int l_pop(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_LIST);
  int has_i = !lua_isnoneornil(L, 2);
  lua_Integer i = 0;
  if (has_i) {
    int isint;
    i = lua_tointegerx(L, 2, &isint);
    if (!isint) return crL_error(L, "ValueError", "ListProxy.pop: index must be an integer, got %s",
                                 luaL_typename(L, 2));
  }
  rsink_t s;
  rsink_init(&s, L, u->a);
  lock(L, u, "pop");
  size_t len = cr_list_len(u->a, u->h.off);
  if (!has_i) i = (lua_Integer)len;
  int rc = 0;
  if (len == 0) rc = 1;
  else if (i < 1 || (size_t)i > len) rc = 2;
  else rc = cr_list_pop(u->a, u->h.off, (size_t)i - 1, rsink, &s);
  unlock(L, u);
  if (rc == 1) return crL_error(L, "IndexError", "ListProxy.pop: pop from empty list");
  if (rc == 2)
    return crL_error(L, "IndexError", "ListProxy.pop: index %I out of range (1..%I)", (LUAI_UACINT)i,
                     (LUAI_UACINT)len);
  if (rc < 0) return op_error(L, u, rc, "pop");
  rsink_finish(&s);
  return 1;
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
      body_check(L, rc, "extend");
    }
    lua_pushboolean(L, 1);
    lua_rawseti(L, 2, k); /* stored: its references belong to the list */
  }
  return 0;
}

static void snapshot_list(lua_State *L, int arg);

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

/* Drops the encodings of a table from encode_all that were not stored. */
static void drop_all(lua_State *L, int t) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, t);
  for (lua_Integer k = 1; k <= n; k++) {
    if (lua_rawgeti(L, t, k) == LUA_TSTRING) {
      size_t len;
      const char *p = lua_tolstring(L, -1, &len);
      drop_encoded(L, p, len);
    }
    lua_pop(L, 1);
  }
}

static int l_extend(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_LIST);
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
    drop_all(L, t);
    return op_error(L, u, rc, "extend");
  }
  int st = lua_pcall(L, 2, 0, 0);
  unlock(L, u);
  if (st != LUA_OK) {
    drop_all(L, t);
    lua_error(L);
  }
  return 0;
}

/* The values of the locked list as a new array table. */
static int totable_body(lua_State *L) {
  mud_t *u = lua_touserdata(L, 1);
  size_t n = cr_list_len(u->a, u->h.off);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    push_elem(L, u, i);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* Items of the locked dict: a table {k1, v1, k2, v2, ...} in order. */
typedef struct {
  lua_State *L;
  cr_arena_t *a;
  lua_Integer n;
} each_t;

static int each_push(void *ud, const void *key, size_t klen, const void *val, size_t vlen) {
  each_t *e = ud;
  key_push(e->L, key, klen);
  lua_rawseti(e->L, -2, ++e->n);
  push_value(e->L, e->a, val, vlen, 0);
  lua_rawseti(e->L, -2, ++e->n);
  return 0;
}

/* (Lua may raise inside cr_dict_each's callback: it holds nothing that
 * needs undoing, and the lock is given back by run_locked.) */
static int items_body(lua_State *L) {
  mud_t *u = lua_touserdata(L, 1);
  size_t n = cr_dict_len(u->a, u->h.off);
  lua_createtable(L, (int)(2 * n), 0);
  each_t e = {L, u->a, 0};
  cr_dict_each(u->a, u->h.off, each_push, &e);
  return 1;
}

/* Pushes a plain table copy of any proxy at arg: an array for a list, a
 * flat {k1, v1, ...} array for a dict or namespace. */
static void snapshot_flat(lua_State *L, int arg, mud_t *u) {
  lua_pushvalue(L, arg);
  run_locked(L, u, lua_gettop(L), u->type == CR_MANAGED_LIST ? totable_body : items_body, 0, 1, "totable");
  lua_remove(L, -2);
}

static void snapshot_list(lua_State *L, int arg) {
  mud_t *u = check(L, arg, 0);
  snapshot_flat(L, arg, u);
  if (u->type != CR_MANAGED_LIST) { /* a dict extends with its keys, as in Python */
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    lua_createtable(L, (int)(n / 2), 0);
    for (lua_Integer k = 1; k <= n; k += 2) {
      lua_rawgeti(L, -2, k);
      lua_rawseti(L, -2, (k + 1) / 2);
    }
    lua_remove(L, -2);
  }
}

static int l_totable(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_LIST);
  lua_settop(L, 1);
  return run_locked(L, u, 1, totable_body, 0, 1, "totable");
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
    body_check(L, cr_list_get(u->a, u->h.off, i, ptr_sink, &q), "index");
    int eq = 0;
    if (nd->deep) {
      push_value(L, u->a, q.p, q.n, 0);
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
  if (mode == 2 && r >= 0) body_check(L, cr_list_pop(u->a, u->h.off, (size_t)r, NULL, NULL), "remove");
  lua_pushinteger(L, r);
  return 1;
}

static int find_common(lua_State *L, int mode, const char *what) {
  mud_t *u = check(L, 1, CR_MANAGED_LIST);
  luaL_checkany(L, 2);
  lua_settop(L, 4);
  lua_Integer from = luaL_optinteger(L, 3, 1);
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
    unlock(L, u);
  }
  /* the needle's encodings hold references of their own (a handle) */
  if (first_enc)
    for (int k = 0; k < nd.n; k++) drop_encoded(L, nd.p[k], nd.len[k]);
  if (rc < 0) return op_error(L, u, rc, what);
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
  totable_body(L);
  sorter_t s = {L, lua_gettop(L), lua_isnil(L, 2) ? 0 : 2};
  uint32_t *perm = lua_newuserdatauv(L, 2 * n * sizeof(uint32_t), 0);
  for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
  merge_sort(&s, perm, perm + n, n);
  body_check(L, cr_list_permute(u->a, u->h.off, perm, n), "sort");
  return 0;
}

/* sort([cmp]): in place, stable; cmp(a, b) true when a goes before b. */
static int l_sort(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_LIST);
  lua_settop(L, 2);
  if (!lua_isnil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  return run_locked(L, u, 1, sort_body, 1, 0, "sort");
}

/* ---- snapshots, pairs and tostring for every proxy ----------------------------- */

static int pairs_iter(lua_State *L) {
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(2));
  int list = lua_toboolean(L, lua_upvalueindex(3));
  lua_Integer n = (lua_Integer)lua_rawlen(L, lua_upvalueindex(1));
  if (list) {
    if (i >= n) return 0;
    lua_pushinteger(L, i + 1);
    lua_replace(L, lua_upvalueindex(2));
    lua_pushinteger(L, i + 1);
    lua_rawgeti(L, lua_upvalueindex(1), i + 1);
    return 2;
  }
  if (i + 2 > n) return 0;
  lua_pushinteger(L, i + 2);
  lua_replace(L, lua_upvalueindex(2));
  lua_rawgeti(L, lua_upvalueindex(1), i + 1);
  lua_rawgeti(L, lua_upvalueindex(1), i + 2);
  return 2;
}

/* __pairs: iterates over a snapshot taken atomically. */
static int p_pairs(lua_State *L) {
  mud_t *u = check(L, 1, 0);
  snapshot_flat(L, 1, u);
  lua_pushinteger(L, 0);
  lua_pushboolean(L, u->type == CR_MANAGED_LIST);
  lua_pushcclosure(L, pairs_iter, 3);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

static int p_tostring(lua_State *L) {
  mud_t *u = lua_touserdata(L, 1);
  if (!u->h.off || cr_managed_is_closed(u->a, u->h.off)) {
    lua_pushfstring(L, "%s (%s)", display(u->type), u->h.off ? "shut down" : "closed");
    return 1;
  }
  snapshot_flat(L, 1, u);
  int t = lua_gettop(L);
  lua_newtable(L);
  int out = t + 1;
  lua_Integer n = (lua_Integer)lua_rawlen(L, t);
  int list = u->type == CR_MANAGED_LIST, ns = u->type == CR_MANAGED_NAMESPACE;
  put(L, out, list ? "[" : ns ? "Namespace(" : "{");
  for (lua_Integer i = 1; i <= n; i += list ? 1 : 2) {
    if (i > 1) put(L, out, ", ");
    lua_rawgeti(L, t, i);
    if (list) {
      repr(L, out, -1, 1);
    } else {
      if (ns) {
        lua_pushvalue(L, -1);
        lua_rawseti(L, out, (lua_Integer)lua_rawlen(L, out) + 1);
        put(L, out, "=");
      } else {
        repr(L, out, -1, 1);
        put(L, out, ": ");
      }
      lua_rawgeti(L, t, i + 1);
      repr(L, out, -1, 1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  put(L, out, list ? "]" : ns ? ")" : "}");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_Integer np = (lua_Integer)lua_rawlen(L, out);
  for (lua_Integer i = 1; i <= np; i++) {
    lua_rawgeti(L, out, i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  return 1;
}

static int p_eq(lua_State *L) {
  crL_handle_t *a = crL_tohandle(L, 1), *b = crL_tohandle(L, 2);
  lua_pushboolean(L, a && b && a->off && a->off == b->off);
  return 1;
}

/* ---- DictProxy and Namespace ------------------------------------------------------- */

/* Pushes d[key at idx], or returns 0 (nothing pushed) when absent. */
static int dict_get(lua_State *L, mud_t *u, int idx, const char *what) {
  mkey_t k;
  key_encode(L, idx, &k, what);
  rsink_t s;
  rsink_init(&s, L, u->a);
  lock(L, u, what);
  int rc = cr_dict_get(u->a, u->h.off, k.p, k.n, rsink, &s);
  unlock(L, u);
  if (rc < 0) return op_error(L, u, rc, what);
  if (rc == 0) return 0;
  rsink_finish(&s);
  return 1;
}

/* d[key at kidx] = value at vidx (nil deletes). */
static void dict_set(lua_State *L, mud_t *u, int kidx, int vidx, const char *what) {
  mkey_t k;
  kidx = lua_absindex(L, kidx);
  vidx = lua_absindex(L, vidx);
  key_encode(L, kidx, &k, what);
  int rc;
  if (lua_isnil(L, vidx)) {
    lock(L, u, what);
    rc = cr_dict_pop(u->a, u->h.off, k.p, k.n, NULL, NULL);
    unlock(L, u);
    if (rc < 0) op_error(L, u, rc, what);
    return;
  }
  size_t n;
  const char *p = crL_encode(L, vidx, "value", &n);
  lock_or_drop(L, u, p, n, what);
  rc = cr_dict_set(u->a, u->h.off, k.p, k.n, p, n);
  store_result(L, u, rc, p, n, what);
}

static int d_index(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_DICT);
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    lua_pop(L, 1);
  }
  return dict_get(L, u, 2, "get");
}

static int d_newindex(lua_State *L) {
  dict_set(L, check(L, 1, CR_MANAGED_DICT), 2, 3, "set");
  return 0;
}

static int ns_index(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_NAMESPACE);
  luaL_checktype(L, 2, LUA_TSTRING);
  return dict_get(L, u, 2, "get");
}

static int ns_newindex(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_NAMESPACE);
  if (lua_type(L, 2) != LUA_TSTRING)
    return crL_error(L, "ValueError", "Namespace: field names are strings, not %s", luaL_typename(L, 2));
  dict_set(L, u, 2, 3, "set");
  return 0;
}

static int d_len(lua_State *L) {
  mud_t *u = check(L, 1, 0);
  lock(L, u, "len");
  size_t n = cr_dict_len(u->a, u->h.off);
  unlock(L, u);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* get(k [, default]) */
static int d_get(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_DICT);
  lua_settop(L, 3);
  if (dict_get(L, u, 2, "get")) return 1;
  lua_pushvalue(L, 3);
  return 1;
}

/* pop(k [, default]): KeyError when absent and no default is given. */
static int d_pop(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_DICT);
  int has_default = lua_gettop(L) >= 3;
  mkey_t k;
  key_encode(L, 2, &k, "pop");
  rsink_t s;
  rsink_init(&s, L, u->a);
  lock(L, u, "pop");
  int rc = cr_dict_pop(u->a, u->h.off, k.p, k.n, rsink, &s);
  unlock(L, u);
  if (rc < 0) return op_error(L, u, rc, "pop");
  if (rc == 1) {
    rsink_finish(&s);
    return 1;
  }
  if (has_default) {
    lua_pushvalue(L, 3);
    return 1;
  }
  luaL_tolstring(L, 2, NULL);
  return crL_error(L, "KeyError", "DictProxy.pop: key %s not found", lua_tostring(L, -1));
}

/* keys(), values(), items(): arrays in insertion order (items: {k, v}). */
static int d_view(lua_State *L, int which) {
  mud_t *u = check(L, 1, CR_MANAGED_DICT);
  snapshot_flat(L, 1, u);
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
  mud_t *u = check(L, 1, 0);
  snapshot_flat(L, 1, u);
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
    body_check(L, cr_dict_set(u->a, u->h.off, k, kl, v, vl), "update");
    lua_pop(L, 2);
    lua_pushboolean(L, 1);
    lua_rawseti(L, 3, i);
  }
  return 0;
}

/* update(table or DictProxy/Namespace): a proxy's pairs are taken in its
 * order (a snapshot), a table's in the order of next. */
static int d_update(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_DICT);
  lua_settop(L, 2);
  mud_t *src = lua_type(L, 2) == LUA_TUSERDATA && crL_tohandle(L, 2) ? check(L, 2, 0) : NULL;
  if (src && src->type != CR_MANAGED_LIST) {
    snapshot_flat(L, 2, src);
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
    mkey_t k;
    int top = lua_gettop(L);
    lua_rawgeti(L, 3, i);
    key_encode(L, top + 1, &k, "update");
    lua_pushlstring(L, k.p, k.n);
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
    drop_all(L, 5);
    return op_error(L, u, rc, "update");
  }
  int st = lua_pcall(L, 3, 0, 0);
  unlock(L, u);
  if (st != LUA_OK) {
    drop_all(L, 5);
    lua_error(L);
  }
  return 0;
}

/* setdefault(k, default): d[k] if present, else stores and returns default. */
static int d_setdefault(lua_State *L) {
  mud_t *u = check(L, 1, CR_MANAGED_DICT);
  lua_settop(L, 3);
  mkey_t k;
  key_encode(L, 2, &k, "setdefault");
  size_t n = 0;
  const char *p = NULL;
  if (!lua_isnil(L, 3)) p = crL_encode(L, 3, "value", &n);
  rsink_t s;
  rsink_init(&s, L, u->a);
  if (p) lock_or_drop(L, u, p, n, "setdefault");
  else lock(L, u, "setdefault");
  int rc = cr_dict_get(u->a, u->h.off, k.p, k.n, rsink, &s);
  int stored = 0;
  if (rc == 0 && p) {
    rc = cr_dict_set(u->a, u->h.off, k.p, k.n, p, n);
    stored = rc >= 0;
  }
  unlock(L, u);
  if (!stored && p) drop_encoded(L, p, n);
  if (rc < 0) return op_error(L, u, rc, "setdefault");
  if (stored || !p) {
    if (rc == 1 && !p) {
      rsink_finish(&s);
      return 1;
    }
    lua_pushvalue(L, 3);
    return 1;
  }
  rsink_finish(&s);
  return 1;
}

/* ---- Manager --------------------------------------------------------------------- */

static mud_t *check_manager(lua_State *L) { return check(L, 1, CR_MANAGED_MANAGER); }

static void manager_open(lua_State *L, mud_t *m, const char *what) {
  if (cr_manager_is_shutdown(m->a, m->h.off))
    crL_error(L, "Closed", "Manager.%s: the Manager was shut down", what);
}

static int l_manager(lua_State *L) {
  cr_off_t off;
  int rc = cr_manager_new(arena(L), &off);
  if (rc < 0) return crL_error_code(L, rc, "Manager");
  push_managed(L, off);
  return 1;
}

static int new_container(lua_State *L, int type, const char *what) {
  mud_t *m = check_manager(L);
  manager_open(L, m, what);
  cr_off_t off;
  int rc = cr_managed_new(m->a, m->h.off, type, &off);
  if (rc == CR_ECLOSED) return crL_error(L, "Closed", "Manager.%s: the Manager was shut down", what);
  if (rc < 0) return crL_error_code(L, rc, what);
  push_managed(L, off);
  return 1;
}

static int mg_list(lua_State *L) {
  lua_settop(L, 2);
  new_container(L, CR_MANAGED_LIST, "list");
  if (!lua_isnil(L, 2)) {
    lua_pushcfunction(L, l_extend);
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 2);
    lua_call(L, 2, 0);
  }
  return 1;
}

static int mg_dict(lua_State *L) {
  lua_settop(L, 2);
  new_container(L, CR_MANAGED_DICT, "dict");
  if (!lua_isnil(L, 2)) {
    lua_pushcfunction(L, d_update);
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 2);
    lua_call(L, 2, 0);
  }
  return 1;
}

static int mg_namespace(lua_State *L) {
  lua_settop(L, 1);
  return new_container(L, CR_MANAGED_NAMESPACE, "Namespace");
}

/* m:Queue(...) and the others: the core constructor named by upvalue 1,
 * its result registered with the manager. */
static int mg_make(lua_State *L) {
  mud_t *m = check_manager(L);
  const char *name = lua_tostring(L, lua_upvalueindex(1));
  manager_open(L, m, name);
  lua_getfield(L, LUA_REGISTRYINDEX, CORE_KEY);
  lua_getfield(L, -1, name);
  lua_replace(L, 1); /* the constructor in place of the manager */
  lua_pop(L, 1);
  int nargs = lua_gettop(L) - 1;
  lua_call(L, nargs, 1);
  crL_handle_t *h = crL_tohandle(L, -1);
  if (!h) return crL_error(L, "ValueError", "Manager.%s: the constructor made no shared object", name);
  int rc = cr_manager_track(m->a, m->h.off, h->off);
  if (rc == CR_ECLOSED) return crL_error(L, "Closed", "Manager.%s: the Manager was shut down", name);
  if (rc < 0) return crL_error_code(L, rc, name);
  return 1;
}

static int mg_shutdown(lua_State *L) {
  mud_t *m = lua_touserdata(L, 1);
  if (!m || !m->h.off) return 0; /* a released handle: nothing to shut */
  check_manager(L);
  int rc = cr_manager_shutdown(m->a, m->h.off);
  flush(L);
  if (rc < 0) return crL_error_code(L, rc, "Manager.shutdown");
  return 0;
}

/* __close: shutdown, then the handle is released. */
static int mg_close(lua_State *L) {
  mud_t *m = lua_touserdata(L, 1);
  if (m && m->h.off) {
    mg_shutdown(L);
    m_gc(L);
  }
  return 0;
}

static int mg_is_shutdown(lua_State *L) {
  mud_t *m = check_manager(L);
  lua_pushboolean(L, cr_manager_is_shutdown(m->a, m->h.off));
  return 1;
}

static int mg_tostring(lua_State *L) {
  mud_t *m = lua_touserdata(L, 1);
  if (!m->h.off) lua_pushliteral(L, "Manager (closed)");
  else if (cr_manager_is_shutdown(m->a, m->h.off)) lua_pushliteral(L, "Manager (shut down)");
  else lua_pushfstring(L, "Manager (%p)", (void *)(uintptr_t)m->h.off);
  return 1;
}

/* ---- test hooks ---------------------------------------------------------------------- */

static int t_park(lua_State *L) {
  const char *w = luaL_checkstring(L, 1);
  cr_managed_test_park(strcmp(w, "before") == 0 ? CR_MANAGED_PARK_BEFORE
                       : strcmp(w, "after") == 0 ? CR_MANAGED_PARK_AFTER : 0);
  return 0;
}

static int t_parked(lua_State *L) {
  mud_t *u = check(L, 1, 0);
  lua_pushinteger(L, cr_managed_test_parked(u->a, u->h.off));
  return 1;
}

static int t_recoveries(lua_State *L) {
  mud_t *u = check(L, 1, 0);
  lua_pushinteger(L, cr_managed_recoveries(u->a, u->h.off));
  return 1;
}

/* ---- registration ------------------------------------------------------------------- */

static const luaL_Reg list_methods[] = {
  {"append", l_append}, {"extend", l_extend}, {"insert", l_insert}, {"pop", l_pop},
  {"remove", l_remove}, {"index", l_index_of}, {"count", l_count}, {"sort", l_sort},
  {"totable", l_totable}, {NULL, NULL}};

static const luaL_Reg dict_methods[] = {
  {"get", d_get},     {"pop", d_pop},       {"keys", d_keys},
  {"values", d_values}, {"items", d_items}, {"update", d_update},
  {"setdefault", d_setdefault}, {"totable", d_totable}, {NULL, NULL}};

static const char *const made[] = {"Queue", "JoinableQueue", "Lock", "RLock", "Semaphore",
                                   "BoundedSemaphore", "Event", "Condition", "Barrier", "Value",
                                   "Array", NULL};

/* Sets the metatable's __index/__newindex to closures over a table of
 * methods (upvalue 1). */
static void proxy_meta(lua_State *L, const char *mt, const luaL_Reg *methods, lua_CFunction index,
                       lua_CFunction newindex, lua_CFunction len) {
  luaL_getmetatable(L, mt);
  lua_newtable(L);
  if (methods) luaL_setfuncs(L, methods, 0);
  lua_pushcclosure(L, index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, len);
  lua_setfield(L, -2, "__len");
  static const luaL_Reg meta[] = {{"__gc", m_gc}, {"__close", m_gc}, {"__pairs", p_pairs},
                                  {"__tostring", p_tostring}, {"__eq", p_eq}, {NULL, NULL}};
  luaL_setfuncs(L, meta, 0);
  lua_pop(L, 1);
}

void crL_open_manager(lua_State *L) {
  static int hooked;
  if (!hooked) {
    hooked = 1;
    cr_proc_on_fork(NULL, fork_child, NULL);
    cr_managed_on_drop(on_drop);
  }
  const char *mts[] = {MANAGER_MT, LIST_MT, DICT_MT, NS_MT};
  crL_handle_class(CR_OBJ_MANAGED, &managed_class);
  for (int i = 0; i < 4; i++) crL_handle_metatable(L, CR_OBJ_MANAGED, mts[i], NULL, NULL);
  proxy_meta(L, LIST_MT, list_methods, l_index, l_newindex, l_len);
  proxy_meta(L, DICT_MT, dict_methods, d_index, d_newindex, d_len);
  proxy_meta(L, NS_MT, NULL, ns_index, ns_newindex, d_len);

  luaL_getmetatable(L, MANAGER_MT);
  lua_newtable(L); /* __index */
  static const luaL_Reg mg[] = {{"list", mg_list}, {"dict", mg_dict}, {"Namespace", mg_namespace},
                                {"shutdown", mg_shutdown}, {"is_shutdown", mg_is_shutdown}, {NULL, NULL}};
  luaL_setfuncs(L, mg, 0);
  for (int i = 0; made[i]; i++) {
    lua_pushstring(L, made[i]);
    lua_pushcclosure(L, mg_make, 1);
    lua_setfield(L, -2, made[i]);
  }
  lua_setfield(L, -2, "__index");
  static const luaL_Reg meta[] = {{"__gc", m_gc}, {"__close", mg_close}, {"__tostring", mg_tostring},
                                  {"__eq", p_eq}, {NULL, NULL}};
  luaL_setfuncs(L, meta, 0);
  lua_pop(L, 1);

  static const luaL_Reg fns[] = {{"Manager", l_manager}, {"_manager_park", t_park},
                                 {"_manager_parked", t_parked}, {"_manager_recoveries", t_recoveries},
                                 {NULL, NULL}};
  crL_setfuncs(L, fns);
}
