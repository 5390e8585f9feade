/* corral bindings: what the Manager's files share.
 *
 *   manager.c          the Manager object, the handles of every managed
 *                      type, stored values and locking, the metamethods
 *                      all proxies share, registration (crL_open_manager)
 *   manager_list.c     ListProxy
 *   manager_dict.c     DictProxy and Namespace
 *   manager_repr.c     tostring(proxy), as Python prints it
 *   manager_testing.c  the test hooks (core._manager_park...)
 *
 * The rules they follow (values as codec messages, the references those
 * hold, what may run under a container's lock) are in manager.c's header.
 * Names shared between these files start with mgr_. */
#ifndef CORRAL_MANAGER_INT_H
#define CORRAL_MANAGER_INT_H

#include "corral_lua.h"
#include "sink.h"

/* A Manager or proxy handle (its code is in manager.c). */
typedef struct {
  crL_handle_t h;
  cr_arena_t *a;
  int type; /* cr_managed_type_t */
} mud_t;

/* ---- manager.c: handles and errors --------------------------------------- */

/* The open handle of `type` at arg (type 0: any proxy). Raises a type
 * error for anything else, Closed for a closed handle. */
mud_t *mgr_check(lua_State *L, int arg, int type);
/* The name Lua code sees for a managed type: "ListProxy"... */
const char *mgr_type_name(int type);
/* Raises the error for an engine code from an operation `what` on u. */
int mgr_op_error(lua_State *L, mud_t *u, int rc, const char *what);

/* ---- manager.c: locking --------------------------------------------------- */

/* Releases the references that the engine dropped (overwritten or removed
 * values) since the last call; called once no lock is held. */
void mgr_flush(lua_State *L);

/* Takes u's lock; raises (mgr_op_error) when it cannot. (Inline: every
 * operation takes one.) */
static inline void mgr_lock(lua_State *L, mud_t *u, const char *what) {
  int rc = cr_managed_lock(u->a, u->h.off);
  if (rc < 0) mgr_op_error(L, u, rc, what);
}

/* Gives u's lock back, then releases the references dropped meanwhile. */
static inline void mgr_unlock(lua_State *L, mud_t *u) {
  cr_managed_unlock(u->a, u->h.off);
  mgr_flush(L);
}
/* mgr_lock for a store of the encoded value p[0..n): when the lock cannot
 * be taken, the value's references are dropped before raising. */
void mgr_lock_or_drop(lua_State *L, mud_t *u, const char *p, size_t n, const char *what);
/* After a store of p[0..n) that returned rc, lock held: gives the lock
 * back; on failure drops the value's references and raises (IndexError for
 * CR_EINVAL). Returns 0. */
int mgr_store_result(lua_State *L, mud_t *u, int rc, const char *p, size_t n, const char *what);
/* Calls body(proxy, args...) with the lock held, under lua_pcall; gives
 * the lock back and raises the body's error if any. The nargs arguments
 * are on top of the stack (the proxy, at arg, is passed first). */
int mgr_run_locked(lua_State *L, mud_t *u, int arg, lua_CFunction body, int nargs, int nres,
                   const char *what);
/* Inside a locked body (the proxy at 1): raises for an engine error. */
void mgr_body_check(lua_State *L, int rc, const char *what);
/* __len: pushes len(u's container), read under the lock; returns 1. */
int mgr_len(lua_State *L, mud_t *u, size_t (*len)(cr_arena_t *, cr_off_t));

/* ---- manager.c: stored values --------------------------------------------- */

/* Pushes a stored value, lock held: takes new references for the handles
 * it names (the container keeps its own), then decodes it. */
void mgr_push_stored(lua_State *L, cr_arena_t *a, const void *p, size_t n);

/* The read sink for one stored value (cr_managed_sink_fn mgr_sink): the
 * shared one of sink.h, after taking new references for the handles the
 * value names. After the lock is given back, crL__sink_finish(&s.s) leaves
 * the value on top or raises the decoder's error. */
typedef struct {
  crL_sink_t s;
  cr_arena_t *a;
} mgr_sink_t;
void mgr_sink_init(mgr_sink_t *s, lua_State *L, cr_arena_t *a);
int mgr_sink(void *ud, const void *data, size_t len);

/* Drops the encodings in the array at t (strings) that were not stored
 * (the entries that are not strings were). */
void mgr_drop_all(lua_State *L, int t);

/* Pushes a plain table copy of any proxy at arg, taken under its lock: an
 * array for a list, a flat {k1, v1, ...} array for a dict or namespace. */
void mgr_snapshot_flat(lua_State *L, int arg, mud_t *u);

/* ---- the proxy types --------------------------------------------------------- */

/* What manager.c puts in a proxy type's metatable: __index (a closure over
 * a table of the methods), __newindex, __len. */
typedef struct {
  const luaL_Reg *methods; /* NULL: none */
  lua_CFunction index, newindex, len;
} mgr_proxy_t;

/* manager_list.c */
extern const mgr_proxy_t mgr_list_proxy;
int mgr_list_extend(lua_State *L);      /* l:extend(t) */
int mgr_list_totable_body(lua_State *L); /* locked body: the list's values as an array */

/* manager_dict.c */
extern const mgr_proxy_t mgr_dict_proxy, mgr_namespace_proxy;
int mgr_dict_update(lua_State *L);     /* d:update(t) */
int mgr_dict_items_body(lua_State *L); /* locked body: {k1, v1, ...} in order */

/* manager_repr.c: __tostring of every proxy. */
int mgr_tostring(lua_State *L);

/* manager_testing.c, in a testing build: puts the test hooks in the core
 * table (on top). */
#ifdef CORRAL_TESTING
void mgr_open_testing(lua_State *L);
#endif

#endif
