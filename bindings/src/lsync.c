/* corral bindings: Lock, RLock, Semaphore, BoundedSemaphore, Event,
 * Condition and Barrier (engine: corral/sync.h).
 *
 * Every object is a handle (crL_handle_t first) with two user values:
 * 1 caches the object's guard (the to-be-closed value of guard()), 2 is
 * kind-specific (a Barrier's action). Lock-like objects share guard() and
 * with(), which call the object's own acquire/release methods.
 *
 * Outcomes (docs/api.md): acquire(t) and wait(t) return true/false. acquire
 * also takes Python's forms: acquire(false) does not wait, acquire(true, t)
 * is acquire(t). Misuse raises ValueError / PermissionError. A Lock or RLock
 * whose previous owner died holding it raises OwnerDied from acquire, with
 * the lock already released again and usable: the caller learns that what
 * the lock protects may be half updated, and the next acquire succeeds.
 * Condition:wait raises OwnerDied too, but with the lock held (it always
 * returns holding the lock, so the caller's guard can release it). */
#include <string.h>

#include "corral_lua.h"

#define LOCK_MT  "corral.Lock"
#define RLOCK_MT "corral.RLock"
#define SEM_MT   "corral.Semaphore"
#define EVENT_MT "corral.Event"
#define COND_MT  "corral.Condition"
#define BAR_MT   "corral.Barrier"
#define GUARD_MT "corral.Guard"

typedef struct {
  crL_handle_t h;
  cr_arena_t *a;
} lsync_t;

/* ---- shared helpers --------------------------------------------------------- */

static void init_sync(lua_State *L, crL_handle_t *h) { ((lsync_t *)h)->a = cr_engine_arena(crL_engine(L)); }

#define SYNC_CLASS(name, mt)                                              \
  static const char *name##_tname(cr_arena_t *a, cr_off_t off) {        \
    (void)a;                                                              \
    (void)off;                                                            \
    return mt;                                                            \
  }                                                                       \
  static const crL_handle_class_t name##_class = {sizeof(lsync_t), 2, name##_tname, init_sync};
SYNC_CLASS(lock, LOCK_MT)
SYNC_CLASS(rlock, RLOCK_MT)
SYNC_CLASS(sem, SEM_MT)
SYNC_CLASS(event, EVENT_MT)
SYNC_CLASS(cond, COND_MT)
SYNC_CLASS(barrier, BAR_MT)

static const char *display_name(lsync_t *u) {
  switch (u->h.kind) {
    case CR_OBJ_LOCK: return "Lock";
    case CR_OBJ_RLOCK: return "RLock";
    case CR_OBJ_SEMAPHORE:
      return u->h.off && cr_sem_is_bounded(u->a, u->h.off) ? "BoundedSemaphore" : "Semaphore";
    case CR_OBJ_EVENT: return "Event";
    case CR_OBJ_CONDITION: return "Condition";
    case CR_OBJ_BARRIER: return "Barrier";
    default: return "object";
  }
}

/* The open handle of kind at arg 1 (one comparison on the path of every
 * acquire: the methods carry their metatable, crL_checkhandle). */
static lsync_t *check(lua_State *L, cr_obj_kind_t kind) { return (lsync_t *)crL_checkhandle(L, 1, kind); }

static int raise_code(lua_State *L, int rc, const char *what) { return crL_error_code(L, rc, what); }

/* acquire's timeout: (t), (false), (true[, t]). */
static double acquire_timeout(lua_State *L, int arg) {
  if (lua_type(L, arg) == LUA_TBOOLEAN) return lua_toboolean(L, arg) ? crL_opttimeout(L, arg + 1) : 0;
  return crL_opttimeout(L, arg);
}

static int h_tostring(lua_State *L) {
  lsync_t *u = lua_touserdata(L, 1);
  if (u->h.off) lua_pushfstring(L, "%s (%p)", display_name(u), (void *)(uintptr_t)u->h.off);
  else lua_pushfstring(L, "%s (closed)", display_name(u));
  return 1;
}

/* ---- Lock and RLock, also behind Condition ------------------------------------- */

/* The log line and the trace instant of a lock taken over from a holder
 * that died (the caller raises OwnerDied). */
static void note_owner_died(const char *what) {
  if (cr_log_enabled(CR_LOG_WARNING))
    cr_log(CR_LOG_WARNING, "%s: took over a lock whose holder died (OwnerDied)", what);
  if (cr_trace_on()) cr_trace_instant(0, "OwnerDied", "fault", cr_trace_now(), NULL);
}

/* Turns an acquire's outcome into Lua's: true, false, or an error. */
static int acquire_result(lua_State *L, cr_arena_t *a, cr_off_t off, int rlock, int rc, const char *what) {
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (rc == CR_ETIMEDOUT) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (rc == CR_EOWNERDEAD) {
    note_owner_died(what);
    if (rlock) cr_rlock_release(a, off);
    else cr_lock_release(a, off);
    return crL_error(L, "OwnerDied",
                     "%s: the previous owner died while holding the %s (it has been released; "
                     "the data it protects may be inconsistent)",
                     what, rlock ? "RLock" : "Lock");
  }
  return raise_code(L, rc, what);
}

static int lock_acquire_off(lua_State *L, cr_arena_t *a, cr_off_t off, double t, const char *what) {
  cr_obj_t *o = cr_arena_ptr(a, off);
  int rlock = o->kind == CR_OBJ_RLOCK;
  int rc = rlock ? cr_rlock_acquire(a, off, t) : cr_lock_acquire(a, off, t);
  return acquire_result(L, a, off, rlock, rc, what);
}

static int lock_release_off(lua_State *L, cr_arena_t *a, cr_off_t off, const char *what) {
  cr_obj_t *o = cr_arena_ptr(a, off);
  int rlock = o->kind == CR_OBJ_RLOCK;
  int rc = rlock ? cr_rlock_release(a, off) : cr_lock_release(a, off);
  if (rc == 0) return 0;
  if (rc == CR_ETOOMANY)
    return crL_error(L, cr_err_kind(rc), "%s: release of an unlocked %s", what, rlock ? "RLock" : "Lock");
  if (rc == CR_ENOTOWNER) {
    if (rlock) return crL_error(L, "PermissionError", "%s: cannot release an RLock this process does not hold", what);
    return crL_error(L, "PermissionError", "%s: the Lock is held by another process", what);
  }
  return raise_code(L, rc, what);
}

static int lock_acquire(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_LOCK);
  double t = lua_isnoneornil(L, 2) ? -1 : acquire_timeout(L, 2);
  int rc = cr_lock_acquire(u->a, u->h.off, 0); /* the uncontended path first */
  if (rc == CR_ETIMEDOUT && t != 0) rc = cr_lock_acquire(u->a, u->h.off, t);
  return acquire_result(L, u->a, u->h.off, 0, rc, "Lock.acquire");
}

static int lock_release(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_LOCK);
  if (cr_lock_release(u->a, u->h.off) != 0) lock_release_off(L, u->a, u->h.off, "Lock.release");
  return 0;
}

static int lock_locked(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_LOCK);
  lua_pushboolean(L, cr_lock_locked(u->a, u->h.off));
  return 1;
}

static int rlock_acquire(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_RLOCK);
  return lock_acquire_off(L, u->a, u->h.off, acquire_timeout(L, 2), "RLock.acquire");
}

static int rlock_release(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_RLOCK);
  lock_release_off(L, u->a, u->h.off, "RLock.release");
  return 0;
}

static int rlock_locked(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_RLOCK);
  lua_pushboolean(L, cr_rlock_locked(u->a, u->h.off));
  return 1;
}

static int rlock_depth(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_RLOCK);
  lua_pushinteger(L, cr_rlock_depth(u->a, u->h.off));
  return 1;
}

static int l_lock(lua_State *L) {
  cr_off_t off;
  int rc = cr_lock_new(cr_engine_arena(crL_engine(L)), &off);
  if (rc < 0) return raise_code(L, rc, "Lock");
  crL_handle_new(L, CR_OBJ_LOCK, off);
  return 1;
}

static int l_rlock(lua_State *L) {
  cr_off_t off;
  int rc = cr_rlock_new(cr_engine_arena(crL_engine(L)), &off);
  if (rc < 0) return raise_code(L, rc, "RLock");
  crL_handle_new(L, CR_OBJ_RLOCK, off);
  return 1;
}

/* ---- guard() and with(), for every lock-like object ----------------------------- */

/* guard([t]) -> a to-be-closed value whose closing releases the object.
 * Acquires first (waiting forever, or t seconds: a Timeout error then). */
static int g_guard(lua_State *L) {
  crL_checkself(L);
  int n = lua_gettop(L);
  lua_getfield(L, 1, "acquire");
  lua_pushvalue(L, 1);
  if (n >= 2) lua_pushvalue(L, 2);
  lua_call(L, n >= 2 ? 2 : 1, 1);
  if (!lua_toboolean(L, -1)) return crL_error(L, "Timeout", "guard: timed out acquiring %s", luaL_tolstring(L, 1, NULL));
  if (lua_getiuservalue(L, 1, 1) == LUA_TUSERDATA) return 1;
  lua_newuserdatauv(L, 0, 1);
  luaL_setmetatable(L, GUARD_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, 1);
  return 1;
}

static int guard_close(lua_State *L) {
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "release");
  lua_insert(L, -2);
  lua_call(L, 1, 0);
  return 0;
}

static int guard_tostring(lua_State *L) {
  lua_getiuservalue(L, 1, 1);
  lua_pushfstring(L, "Guard of %s", luaL_tolstring(L, -1, NULL));
  return 1;
}

/* with(fn, ...) -> fn's results: acquires, calls fn(...), releases (also
 * when fn raises, and then re-raises). */
static int g_with(lua_State *L) {
  crL_checkself(L);
  crL_checkcallable(L, 2);
  int n = lua_gettop(L);
  lua_getfield(L, 1, "acquire");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 0);
  lua_pushvalue(L, 2);
  for (int i = 3; i <= n; i++) lua_pushvalue(L, i);
  int st = lua_pcall(L, n - 2, LUA_MULTRET, 0);
  int nres = lua_gettop(L) - n;
  lua_getfield(L, 1, "release");
  lua_pushvalue(L, 1);
  if (st != LUA_OK) {
    lua_pcall(L, 1, 0, 0); /* the first error is the one to report */
    lua_settop(L, n + 1);
    return lua_error(L);
  }
  lua_call(L, 1, 0);
  return nres;
}

/* ---- Semaphore ------------------------------------------------------------------ */

static int sem_new(lua_State *L, int bounded) {
  const char *name = bounded ? "BoundedSemaphore" : "Semaphore";
  lua_Integer v = 1;
  if (!lua_isnoneornil(L, 1)) {
    if (!lua_isinteger(L, 1))
      return crL_error(L, "ValueError", "%s: bad argument #1 (integer expected, got %s)", name, luaL_typename(L, 1));
    v = lua_tointeger(L, 1);
  }
  if (v < 0) return crL_error(L, "ValueError", "%s: initial value must be >= 0, got %d", name, (int)v);
  if (v > CR_SEM_MAX) return crL_error(L, "ValueError", "%s: initial value too large", name);
  cr_off_t off;
  int rc = cr_sem_new(cr_engine_arena(crL_engine(L)), (long)v, bounded, &off);
  if (rc < 0) return raise_code(L, rc, name);
  crL_handle_new(L, CR_OBJ_SEMAPHORE, off);
  return 1;
}

static int l_semaphore(lua_State *L) { return sem_new(L, 0); }
static int l_bsemaphore(lua_State *L) { return sem_new(L, 1); }

static int sem_acquire(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_SEMAPHORE);
  int rc = cr_sem_acquire(u->a, u->h.off, acquire_timeout(L, 2));
  if (rc == 0 || rc == CR_ETIMEDOUT) {
    lua_pushboolean(L, rc == 0);
    return 1;
  }
  return raise_code(L, rc, "Semaphore.acquire");
}

static int sem_release(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_SEMAPHORE);
  int rc = cr_sem_release(u->a, u->h.off);
  if (rc == CR_EOVERFLOW) {
    if (cr_sem_is_bounded(u->a, u->h.off))
      return crL_error(L, "ValueError", "BoundedSemaphore.release: released too many times");
    return crL_error(L, "OverflowError", "Semaphore.release: value would exceed %d", CR_SEM_MAX);
  }
  if (rc < 0) return raise_code(L, rc, "Semaphore.release");
  return 0;
}

static int sem_get_value(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_SEMAPHORE);
  lua_pushinteger(L, cr_sem_value(u->a, u->h.off));
  return 1;
}

/* ---- Event --------------------------------------------------------------------- */

static int l_event(lua_State *L) {
  cr_off_t off;
  int rc = cr_event_new(cr_engine_arena(crL_engine(L)), &off);
  if (rc < 0) return raise_code(L, rc, "Event");
  crL_handle_new(L, CR_OBJ_EVENT, off);
  return 1;
}

static int ev_set(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_EVENT);
  cr_event_set(u->a, u->h.off);
  return 0;
}

static int ev_clear(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_EVENT);
  cr_event_clear(u->a, u->h.off);
  return 0;
}

static int ev_is_set(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_EVENT);
  lua_pushboolean(L, cr_event_is_set(u->a, u->h.off));
  return 1;
}

static int ev_wait(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_EVENT);
  int rc = cr_event_wait(u->a, u->h.off, crL_opttimeout(L, 2));
  if (rc == 0 || rc == CR_ETIMEDOUT) {
    lua_pushboolean(L, rc == 0);
    return 1;
  }
  return raise_code(L, rc, "Event.wait");
}

/* ---- Condition ------------------------------------------------------------------ */

/* Condition([lock]): lock is a Lock or RLock; none gives a new RLock. */
static int l_condition(lua_State *L) {
  cr_arena_t *a = cr_engine_arena(crL_engine(L));
  cr_off_t lock_off;
  int own_lock = 0;
  if (lua_isnoneornil(L, 1)) {
    int rc = cr_rlock_new(a, &lock_off);
    if (rc < 0) return raise_code(L, rc, "Condition");
    own_lock = 1;
  } else {
    lsync_t *u = (lsync_t *)crL_tohandle(L, 1);
    if (!u || (u->h.kind != CR_OBJ_LOCK && u->h.kind != CR_OBJ_RLOCK))
      return crL_error(L, "ValueError", "Condition: bad argument #1 (Lock or RLock expected, got %s)",
                       luaL_typename(L, 1));
    if (!u->h.off) return crL_error_closed(L, display_name(u));
    lock_off = u->h.off;
  }
  cr_off_t off;
  int rc = cr_cond_new(a, lock_off, &off);
  if (own_lock) cr_obj_drop(a, lock_off); /* the Condition holds it now */
  if (rc < 0) return raise_code(L, rc, "Condition");
  crL_handle_new(L, CR_OBJ_CONDITION, off);
  return 1;
}

static int cond_acquire(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_CONDITION);
  return lock_acquire_off(L, u->a, cr_cond_lock(u->a, u->h.off), acquire_timeout(L, 2), "Condition.acquire");
}

static int cond_release(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_CONDITION);
  lock_release_off(L, u->a, cr_cond_lock(u->a, u->h.off), "Condition.release");
  return 0;
}

/* 1 notified, 0 timed out; raises otherwise. */
static int cond_wait_raw(lua_State *L, lsync_t *u, double t) {
  int rc = cr_cond_wait(u->a, u->h.off, t);
  if (rc == 0) return 1;
  if (rc == CR_ETIMEDOUT) return 0;
  if (rc == CR_ENOTOWNER) return crL_error(L, "PermissionError", "Condition.wait: cannot wait on an un-acquired lock");
  if (rc == CR_EOWNERDEAD) {
    note_owner_died("Condition.wait");
    return crL_error(L, "OwnerDied", "Condition.wait: a process died holding the lock (it is held again by this process)");
  }
  if (rc == CR_EFULL)
    return crL_error(L, "ValueError", "Condition.wait: more than %d processes waiting", CR_COND_WAITERS);
  return raise_code(L, rc, "Condition.wait");
}

static int cond_wait(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_CONDITION);
  lua_pushboolean(L, cond_wait_raw(L, u, crL_opttimeout(L, 2)));
  return 1;
}

/* wait_for(pred, t) -> pred's last result: waits until pred() is true or t
 * seconds have passed (pred is called with the lock held). */
static int cond_wait_for(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_CONDITION);
  crL_checkcallable(L, 2);
  double t = crL_opttimeout(L, 3);
  double deadline = t >= 0 ? cr_now() + t : -1;
  lua_settop(L, 2);
  for (;;) {
    lua_pushvalue(L, 2);
    lua_call(L, 0, 1);
    if (lua_toboolean(L, -1)) return 1;
    double left = -1;
    if (deadline >= 0) {
      left = deadline - cr_now();
      if (left <= 0) return 1;
    }
    lua_pop(L, 1);
    cond_wait_raw(L, u, left);
  }
}

static int cond_notify(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_CONDITION);
  lua_Integer n = 1;
  if (!lua_isnoneornil(L, 2)) {
    if (!lua_isinteger(L, 2))
      return crL_error(L, "ValueError", "Condition.notify: bad argument #1 (integer expected, got %s)", luaL_typename(L, 2));
    n = lua_tointeger(L, 2);
    if (n < 0) return crL_error(L, "ValueError", "Condition.notify: n must be >= 0");
    if (n > 0x7fffffff) n = 0x7fffffff;
  }
  int rc = cr_cond_notify(u->a, u->h.off, (int)n);
  if (rc == CR_ENOTOWNER) return crL_error(L, "PermissionError", "Condition.notify: cannot notify on an un-acquired lock");
  if (rc < 0) return raise_code(L, rc, "Condition.notify");
  lua_pushinteger(L, rc);
  return 1;
}

static int cond_notify_all(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_CONDITION);
  int rc = cr_cond_notify(u->a, u->h.off, -1);
  if (rc == CR_ENOTOWNER) return crL_error(L, "PermissionError", "Condition.notify_all: cannot notify on an un-acquired lock");
  if (rc < 0) return raise_code(L, rc, "Condition.notify_all");
  lua_pushinteger(L, rc);
  return 1;
}

/* ---- Barrier --------------------------------------------------------------------- */

#define ACTION_NONE 0 /* first byte of the attached bytes */
#define ACTION_CODE 1

static int is_callable(lua_State *L, int idx) {
  if (lua_isfunction(L, idx)) return 1;
  if (!luaL_getmetafield(L, idx, "__call")) return 0;
  lua_pop(L, 1);
  return 1;
}

/* pcall'd: encodes the action (arg 1) into the barrier (arg 2 light = lsync_t*). */
static int encode_action(lua_State *L) {
  lsync_t *u = lua_touserdata(L, 2);
  size_t len;
  const char *p = crL_encode(L, 1, "action", &len);
  luaL_Buffer b;
  char *dst = luaL_buffinitsize(L, &b, len + 1);
  dst[0] = ACTION_CODE;
  memcpy(dst + 1, p, len);
  int rc = cr_barrier_attach(u->a, u->h.off, dst, len + 1);
  if (rc < 0) return raise_code(L, rc, "Barrier");
  return 0;
}

/* Barrier(parties, action, timeout) */
static int l_barrier(lua_State *L) {
  if (!lua_isinteger(L, 1))
    return crL_error(L, "ValueError", "Barrier: bad argument #1 (parties must be an integer, got %s)", luaL_typename(L, 1));
  lua_Integer parties = lua_tointeger(L, 1);
  if (parties < 1 || parties > 0x7fffffff)
    return crL_error(L, "ValueError", "Barrier: parties must be >= 1, got %d", (int)parties);
  int has_action = !lua_isnoneornil(L, 2);
  if (has_action && !is_callable(L, 2))
    return crL_error(L, "ValueError", "Barrier: bad argument #2 (action must be callable, got %s)", luaL_typename(L, 2));
  double timeout = crL_opttimeout(L, 3);
  cr_off_t off;
  int rc = cr_barrier_new(cr_engine_arena(crL_engine(L)), (int)parties, timeout, &off);
  if (rc < 0) return raise_code(L, rc, "Barrier");
  crL_handle_new(L, CR_OBJ_BARRIER, off);
  int bar = lua_gettop(L);
  if (has_action) {
    lsync_t *u = lua_touserdata(L, bar);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, bar, 2);
    /* Keep an encoded copy in the barrier for processes that receive the
     * handle without the function (spawn, messages). When the action cannot
     * be encoded, record why, for the process that would need it. */
    lua_pushcfunction(L, encode_action);
    lua_pushvalue(L, 2);
    lua_pushlightuserdata(L, u);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
      size_t mlen;
      const char *msg = luaL_tolstring(L, -1, &mlen);
      luaL_Buffer b;
      char *dst = luaL_buffinitsize(L, &b, mlen + 1);
      dst[0] = ACTION_NONE;
      memcpy(dst + 1, msg, mlen);
      cr_barrier_attach(u->a, u->h.off, dst, mlen + 1);
    }
    lua_settop(L, bar);
  }
  return 1;
}

typedef struct {
  lua_State *L;
  int fn;       /* stack index of the action, 0 when it cannot run here */
  int failed;   /* the action raised: its error is on top of the stack */
} action_ctx_t;

static int run_action(void *arg) {
  action_ctx_t *x = arg;
  lua_State *L = x->L;
  if (!x->fn) {
    x->failed = 1; /* the message was pushed beforehand */
    return -1;
  }
  lua_pushvalue(L, x->fn);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    x->failed = 1;
    return -1;
  }
  return 0;
}

/* pcall'd: decodes the barrier's copy of its action. Decoding adopts the
 * references that the copy holds on the handles in it (its upvalues), but
 * the copy is decoded once per process that needs it: encoding the result
 * again (and dropping those bytes) takes the same references once more, so
 * the copy keeps holding its own. */
static int decode_action(lua_State *L) {
  const char *p = lua_touserdata(L, 1);
  size_t n = (size_t)lua_tointeger(L, 2);
  crL_decode(L, p, n, 0);
  size_t len;
  crL_encode(L, -1, "action", &len);
  lua_pop(L, 1);
  return 1;
}

/* Pushes the action for this process, or an error object saying why it
 * cannot run here; nothing when the barrier has none. Returns 1 for a
 * function, -1 for an error object, 0 for none. */
static int push_action(lua_State *L, lsync_t *u, int self) {
  if (lua_getiuservalue(L, self, 2) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  size_t len;
  const unsigned char *p = cr_barrier_attached(u->a, u->h.off, &len);
  if (!p || len == 0) return 0;
  if (p[0] == ACTION_NONE) {
    crL_pusherror(L, "BrokenBarrier", "Barrier action cannot run in this process: %s", (const char *)p + 1);
    return -1;
  }
  lua_pushcfunction(L, decode_action);
  lua_pushlightuserdata(L, (void *)(p + 1));
  lua_pushinteger(L, (lua_Integer)(len - 1));
  if (lua_pcall(L, 2, 1, 0) != LUA_OK || !is_callable(L, -1)) {
    const char *msg = lua_tostring(L, -1);
    crL_pusherror(L, "BrokenBarrier", "Barrier action cannot run in this process: %s", msg ? msg : "not callable");
    return -1;
  }
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, self, 2);
  return 1;
}

/* wait(t) -> arrival index 1..parties (t = nil: the barrier's timeout). */
static int bar_wait(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_BARRIER);
  double t = lua_isnoneornil(L, 2) ? cr_barrier_timeout(u->a, u->h.off) : crL_opttimeout(L, 2);
  lua_settop(L, 1);
  action_ctx_t x = {L, 0, 0};
  int has = push_action(L, u, 1);
  if (has == 1) x.fn = lua_gettop(L);
  int idx = 0;
  int rc = cr_barrier_wait(u->a, u->h.off, t, &idx, has ? run_action : NULL, &x);
  if (rc == 0) {
    lua_pushinteger(L, idx + 1);
    return 1;
  }
  if (x.failed) return lua_error(L); /* the action's own error (or why it could not run) */
  if (rc == CR_EBROKEN) return crL_error(L, "BrokenBarrier", "Barrier.wait: the barrier is broken");
  return raise_code(L, rc, "Barrier.wait");
}

static int bar_reset(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_BARRIER);
  cr_barrier_reset(u->a, u->h.off);
  return 0;
}

static int bar_abort(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_BARRIER);
  cr_barrier_abort(u->a, u->h.off);
  return 0;
}

/* Fields parties, n_waiting, broken, timeout; else the methods. */
static int bar_index(lua_State *L) {
  lsync_t *u = check(L, CR_OBJ_BARRIER);
  const char *k = lua_tostring(L, 2);
  if (k && lua_type(L, 2) == LUA_TSTRING) {
    if (strcmp(k, "parties") == 0) {
      lua_pushinteger(L, cr_barrier_parties(u->a, u->h.off));
      return 1;
    }
    if (strcmp(k, "n_waiting") == 0) {
      lua_pushinteger(L, cr_barrier_n_waiting(u->a, u->h.off));
      return 1;
    }
    if (strcmp(k, "broken") == 0) {
      lua_pushboolean(L, cr_barrier_broken(u->a, u->h.off));
      return 1;
    }
    if (strcmp(k, "timeout") == 0) {
      double t = cr_barrier_timeout(u->a, u->h.off);
      if (t < 0) lua_pushnil(L);
      else lua_pushnumber(L, t);
      return 1;
    }
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

/* ---- registration ------------------------------------------------------------------ */

static void new_type(lua_State *L, cr_obj_kind_t kind, const char *mt, const crL_handle_class_t *cls,
                     const luaL_Reg *methods, lua_CFunction index_fn) {
  static const luaL_Reg meta[] = {{"__tostring", h_tostring}, {NULL, NULL}};
  static const luaL_Reg close[] = {{"close", crL_handle_close}, {NULL, NULL}};
  crL_handle_class(kind, cls);
  crL_handle_metatable(L, kind, mt, meta, methods);
  crL_handle_methods(L, mt, close);
  if (index_fn) { /* __index is a function over the methods */
    luaL_getmetatable(L, mt);
    lua_getfield(L, -1, "__index");
    lua_pushcclosure(L, index_fn, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
  }
}

void crL_open_sync(lua_State *L) {
  static const luaL_Reg lock_m[] = {{"acquire", lock_acquire}, {"release", lock_release},
                                    {"locked", lock_locked},   {"guard", g_guard},
                                    {"with", g_with},          {NULL, NULL}};
  static const luaL_Reg rlock_m[] = {{"acquire", rlock_acquire}, {"release", rlock_release},
                                     {"depth", rlock_depth},     {"locked", rlock_locked},
                                     {"guard", g_guard},
                                     {"with", g_with},           {NULL, NULL}};
  static const luaL_Reg sem_m[] = {{"acquire", sem_acquire}, {"release", sem_release},
                                   {"get_value", sem_get_value}, {"guard", g_guard},
                                   {"with", g_with},         {NULL, NULL}};
  static const luaL_Reg event_m[] = {{"set", ev_set},   {"clear", ev_clear}, {"is_set", ev_is_set},
                                     {"wait", ev_wait}, {NULL, NULL}};
  static const luaL_Reg cond_m[] = {{"acquire", cond_acquire}, {"release", cond_release},
                                    {"guard", g_guard},        {"with", g_with},
                                    {"wait", cond_wait},       {"wait_for", cond_wait_for},
                                    {"notify", cond_notify},   {"notify_all", cond_notify_all},
                                    {NULL, NULL}};
  static const luaL_Reg bar_m[] = {{"wait", bar_wait}, {"reset", bar_reset}, {"abort", bar_abort}, {NULL, NULL}};
  new_type(L, CR_OBJ_LOCK, LOCK_MT, &lock_class, lock_m, NULL);
  new_type(L, CR_OBJ_RLOCK, RLOCK_MT, &rlock_class, rlock_m, NULL);
  new_type(L, CR_OBJ_SEMAPHORE, SEM_MT, &sem_class, sem_m, NULL);
  new_type(L, CR_OBJ_EVENT, EVENT_MT, &event_class, event_m, NULL);
  new_type(L, CR_OBJ_CONDITION, COND_MT, &cond_class, cond_m, NULL);
  new_type(L, CR_OBJ_BARRIER, BAR_MT, &barrier_class, bar_m, bar_index);
  if (luaL_newmetatable(L, GUARD_MT)) {
    lua_pushcfunction(L, guard_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, guard_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"Lock", l_lock},
                                 {"RLock", l_rlock},
                                 {"Semaphore", l_semaphore},
                                 {"BoundedSemaphore", l_bsemaphore},
                                 {"Event", l_event},
                                 {"Condition", l_condition},
                                 {"Barrier", l_barrier},
                                 {NULL, NULL}};
  crL_setfuncs(L, fns);
}
