/* corral bindings: Manager and its proxies (engine: corral/managed.h, which
 * explains why the state lives in the shared arena rather than in a server
 * process, and how it survives a client killed mid-operation). The proxy
 * types have files of their own (manager_int.h lists them); this one holds
 * the Manager object, the handles of every managed type, what the proxies
 * share, and the registration.
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
 * Dict keys: strings, numbers (not NaN) and booleans, each encoded by the
 * codec to a canonical byte string (crL_encode_key: d[1] and d[1.0] are one
 * key, Lua's own rule). Anything else raises ValueError naming the type.
 *
 * Locking discipline: single-value operations encode before taking the lock
 * and decode after giving it back, so no Lua runs under the lock. Compound
 * ones (sort with a comparator, remove, snapshots) run their Lua part under
 * the lock inside lua_pcall, so an error cannot leave it held; the engine's
 * CR_ESTATE catches a comparator that calls back into the same proxy. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "manager_int.h"

#define MANAGER_MT "corral.Manager"
#define LIST_MT    "corral.ListProxy"
#define DICT_MT    "corral.DictProxy"
#define NS_MT      "corral.Namespace"

static cr_arena_t *arena(lua_State *L) { return cr_engine_arena(crL_engine(L)); }

static const char *mt_of(int type) {
  switch (type) {
    case CR_MANAGED_MANAGER: return MANAGER_MT;
    case CR_MANAGED_LIST: return LIST_MT;
    case CR_MANAGED_DICT: return DICT_MT;
    default: return NS_MT;
  }
}

/* The engine names its types Manager, List, Dict and Namespace; Lua code
 * sees the proxies. */
static const char *const type_names[CR_MANAGED__MAX] = {
  [CR_MANAGED_MANAGER] = "Manager",
  [CR_MANAGED_LIST] = "ListProxy",
  [CR_MANAGED_DICT] = "DictProxy",
  [CR_MANAGED_NAMESPACE] = "Namespace",
};

const char *mgr_type_name(int type) {
  return type > 0 && type < CR_MANAGED__MAX && type_names[type] ? type_names[type] : "unknown";
}

/* ---- handles inside stored values ------------------------------------------------ */

static void retain_one(void *a, uint32_t kind, cr_off_t off) {
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

static void pend_one(void *ud, uint32_t kind, cr_off_t off) {
  (void)ud;
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
static void on_drop(const void *data, size_t len) { crL_codec_each_handle(data, len, pend_one, NULL); }

/* The queued references are messages' (stored values'), recorded in no
 * ledger: each is dropped as its kind drops it. */
void mgr_flush(lua_State *L) {
  cr_arena_t *a = arena(L);
  while (npend) cr_obj_drop(a, pend[--npend].off);
}

void mgr_push_stored(lua_State *L, cr_arena_t *a, const void *p, size_t n) {
  crL_codec_each_handle(p, n, retain_one, a);
  crL_decode(L, p, n, 0);
}

/* ---- reading one value without running Lua under the lock ------------------- */

void mgr_sink_init(mgr_sink_t *s, lua_State *L, cr_arena_t *a) {
  s->s.L = L;
  s->s.raw = 0;
  s->s.status = LUA_OK;
  s->s.own_refs = 0;
  s->s.is_small = 0;
  s->a = a;
}

int mgr_sink(void *ud, const void *data, size_t len) {
  mgr_sink_t *s = ud;
  crL_codec_each_handle(data, len, retain_one, s->a);
  return crL__sink(&s->s, data, len);
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
    mgr_flush(L);
  }
  return 0;
}

/* A forked child leaves the references waiting to be dropped to its
 * parent, which drops them itself. */
static void fork_child(void *arg) {
  (void)arg;
  npend = 0;
}

mud_t *mgr_check(lua_State *L, int arg, int type) {
  mud_t *u = lua_touserdata(L, arg);
  int ok = 0;
  if (u && lua_getmetatable(L, arg)) {
    lua_getfield(L, -1, "__corral_kind");
    ok = lua_tointeger(L, -1) == CR_OBJ_MANAGED && (!type || u->type == type);
    lua_pop(L, 2);
  }
  if (!ok) {
    crL_objecterror(L, arg, type ? mgr_type_name(type) : "proxy");
    return NULL;
  }
  if (!u->h.off) crL_error_closed(L, mgr_type_name(u->type));
  return u;
}

int mgr_op_error(lua_State *L, mud_t *u, int rc, const char *what) {
  const char *name = mgr_type_name(u->type);
  if (rc == CR_ECLOSED)
    return crL_error(L, "Closed", "%s.%s: the %s's Manager was shut down", name, what, name);
  if (rc == CR_ESTATE)
    return crL_error(L, "StateError",
                     "%s.%s: this process is already inside an operation on this %s "
                     "(a sort comparator using it?)",
                     name, what, name);
  lua_pushfstring(L, "%s.%s", name, what);
  return crL_error_code(L, rc, lua_tostring(L, -1));
}

/* ---- locking -------------------------------------------------------------------- */

void mgr_lock_or_drop(lua_State *L, mud_t *u, const char *p, size_t n, const char *what) {
  int rc = cr_managed_lock(u->a, u->h.off);
  if (rc < 0) {
    crL_decode_drop(L, p, n);
    mgr_op_error(L, u, rc, what);
  }
}

int mgr_store_result(lua_State *L, mud_t *u, int rc, const char *p, size_t n, const char *what) {
  mgr_unlock(L, u);
  if (rc < 0) {
    crL_decode_drop(L, p, n);
    if (rc == CR_EINVAL)
      return crL_error(L, "IndexError", "%s.%s: list index out of range", mgr_type_name(u->type), what);
    return mgr_op_error(L, u, rc, what);
  }
  return 0;
}

int mgr_run_locked(lua_State *L, mud_t *u, int arg, lua_CFunction body, int nargs, int nres,
                   const char *what) {
  lua_pushcfunction(L, body);
  lua_pushvalue(L, arg);
  lua_rotate(L, -(nargs + 2), 2);
  mgr_lock(L, u, what);
  int st = lua_pcall(L, nargs + 1, nres, 0);
  mgr_unlock(L, u);
  if (st != LUA_OK) lua_error(L);
  return nres;
}

void mgr_body_check(lua_State *L, int rc, const char *what) {
  if (rc < 0) {
    mud_t *u = lua_touserdata(L, 1);
    mgr_op_error(L, u, rc, what);
  }
}

int mgr_len(lua_State *L, mud_t *u, size_t (*len)(cr_arena_t *, cr_off_t)) {
  mgr_lock(L, u, "len");
  size_t n = len(u->a, u->h.off);
  mgr_unlock(L, u);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

void mgr_drop_all(lua_State *L, int t) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, t);
  for (lua_Integer k = 1; k <= n; k++) {
    if (lua_rawgeti(L, t, k) == LUA_TSTRING) {
      size_t len;
      const char *p = lua_tolstring(L, -1, &len);
      crL_decode_drop(L, p, len);
    }
    lua_pop(L, 1);
  }
}

/* ---- snapshots, pairs and == for every proxy ------------------------------------ */

void mgr_snapshot_flat(lua_State *L, int arg, mud_t *u) {
  lua_pushvalue(L, arg);
  mgr_run_locked(L, u, lua_gettop(L), u->type == CR_MANAGED_LIST ? mgr_list_totable_body : mgr_dict_items_body,
                 0, 1, "totable");
  lua_remove(L, -2);
}

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
  mud_t *u = mgr_check(L, 1, 0);
  mgr_snapshot_flat(L, 1, u);
  lua_pushinteger(L, 0);
  lua_pushboolean(L, u->type == CR_MANAGED_LIST);
  lua_pushcclosure(L, pairs_iter, 3);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

static int p_eq(lua_State *L) {
  crL_handle_t *a = crL_tohandle(L, 1), *b = crL_tohandle(L, 2);
  lua_pushboolean(L, a && b && a->off && a->off == b->off);
  return 1;
}

/* ---- Manager --------------------------------------------------------------------- */

static mud_t *check_manager(lua_State *L) { return mgr_check(L, 1, CR_MANAGED_MANAGER); }

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

/* m:list(init) and m:dict(init): a new container, then fill(container, init). */
static int new_filled(lua_State *L, int type, const char *what, lua_CFunction fill) {
  lua_settop(L, 2);
  new_container(L, type, what);
  if (!lua_isnil(L, 2)) {
    lua_pushcfunction(L, fill);
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 2);
    lua_call(L, 2, 0);
  }
  return 1;
}

static int mg_list(lua_State *L) { return new_filled(L, CR_MANAGED_LIST, "list", mgr_list_extend); }
static int mg_dict(lua_State *L) { return new_filled(L, CR_MANAGED_DICT, "dict", mgr_dict_update); }

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
  lua_getfield(L, LUA_REGISTRYINDEX, CRL_CORE_KEY);
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
  crL_handle_t *h = crL_tohandle(L, 1);
  if (h && h->kind == CR_OBJ_MANAGED && !h->off) return 0; /* a released handle: nothing to shut */
  mud_t *m = check_manager(L);
  int rc = cr_manager_shutdown(m->a, m->h.off);
  mgr_flush(L);
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

/* ---- registration ------------------------------------------------------------------- */

static const char *const made[] = {"Queue", "JoinableQueue", "Lock", "RLock", "Semaphore",
                                   "BoundedSemaphore", "Event", "Condition", "Barrier", "Value",
                                   "Array", NULL};

/* Fills the metatable of a proxy type: __index/__newindex/__len from p
 * (__index a closure over a table of the methods) and the metamethods
 * every proxy shares. */
static void proxy_meta(lua_State *L, const char *mt, const mgr_proxy_t *p) {
  luaL_getmetatable(L, mt);
  lua_newtable(L);
  if (p->methods) luaL_setfuncs(L, p->methods, 0);
  lua_pushcclosure(L, p->index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, p->newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, p->len);
  lua_setfield(L, -2, "__len");
  static const luaL_Reg meta[] = {{"__gc", m_gc}, {"__close", m_gc}, {"__pairs", p_pairs},
                                  {"__tostring", mgr_tostring}, {"__eq", p_eq}, {NULL, NULL}};
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
  proxy_meta(L, LIST_MT, &mgr_list_proxy);
  proxy_meta(L, DICT_MT, &mgr_dict_proxy);
  proxy_meta(L, NS_MT, &mgr_namespace_proxy);

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

  static const luaL_Reg fns[] = {{"Manager", l_manager}, {NULL, NULL}};
  crL_setfuncs(L, fns);
#ifdef CORRAL_TESTING
  mgr_open_testing(L);
#endif
}
