/* corral bindings: Queue, JoinableQueue and SimpleQueue.
 *
 *   q = mp.Queue([maxsize])      maxsize nil or 0: unbounded
 *   q = mp.JoinableQueue([maxsize])
 *   q = mp.SimpleQueue()
 *   q:put(v [, t])   -> true | false, "full" | false, "closed"
 *   q:get([t])       -> v | nil, "timeout" | nil, "closed"  (nil is an item:
 *                       tell it by the second value)
 *   q:put_nowait(v)  raises Full (or Closed);  q:get_nowait() raises Empty
 *                    (or Closed): the nowait forms raise on every outcome
 *                    other than success, as in Python
 *   q:qsize() q:empty() q:full()
 *   q:close()        closes the queue for every process: put gives
 *                    false, "closed"; readers drain, then get nil, "closed".
 *                    The handle stays usable (to drain).
 *   q:iter([t])      for item in q:iter() do ... end, until closed and
 *                    drained; nil items are skipped (a generic for cannot
 *                    carry them); a per-item timeout t raises Timeout.
 *   JoinableQueue: q:task_done() (ValueError when called more often than
 *                  put), q:join([t]) -> true | false
 *
 * The handle itself is released by __gc and __close (a to-be-closed
 * variable); a released handle raises "attempt to use a closed Queue".
 * Values go through the codec: encoded once in the sender (an EncodeError
 * leaves the queue untouched), copied once into shared memory, decoded in
 * the receiver straight from shared memory. */
#include <string.h>
#include <unistd.h>

#include "sink.h"

#define QUEUE_MT    "corral.Queue"
#define JQUEUE_MT   "corral.JoinableQueue"
#define SQUEUE_MT   "corral.SimpleQueue"

static const char *type_name(unsigned flags) {
  return (flags & CR_QUEUE_JOINABLE) ? "JoinableQueue" : (flags & CR_QUEUE_SIMPLE) ? "SimpleQueue" : "Queue";
}

static cr_arena_t *arena(lua_State *L) { return cr_engine_arena(crL_engine(L)); }

static const char *queue_tname(cr_arena_t *a, cr_off_t off) {
  unsigned flags = cr_queue_flags(a, off);
  return (flags & CR_QUEUE_JOINABLE) ? JQUEUE_MT : (flags & CR_QUEUE_SIMPLE) ? SQUEUE_MT : QUEUE_MT;
}

static const crL_handle_class_t queue_class = {sizeof(crL_handle_t), 0, queue_tname, NULL};

/* The open queue handle at arg 1, of any of the three types. */
static crL_handle_t *check_queue(lua_State *L) { return crL_checkhandle(L, 1, CR_OBJ_QUEUE); }

static crL_handle_t *check_joinable(lua_State *L) {
  crL_handle_t *h = check_queue(L);
  if (!(cr_queue_flags(arena(L), h->off) & CR_QUEUE_JOINABLE)) crL_selferror(L, "JoinableQueue");
  return h;
}

static int64_t check_maxsize(lua_State *L, const char *fname) {
  if (lua_isnoneornil(L, 1)) return 0;
  if (lua_type(L, 1) != LUA_TNUMBER)
    return crL_error(L, "ValueError", "bad argument #1 to '%s' (maxsize must be a non-negative integer, got %s)",
                     fname, luaL_typename(L, 1));
  int isint;
  lua_Integer n = lua_tointegerx(L, 1, &isint);
  if (!isint || n < 0)
    return crL_error(L, "ValueError", "bad argument #1 to '%s' (maxsize must be a non-negative integer, got %s)",
                     fname, lua_tostring(L, 1));
  return (int64_t)n;
}

static int new_queue(lua_State *L, int64_t maxsize, unsigned flags) {
  cr_off_t off;
  int rc = cr_queue_new(arena(L), maxsize, flags, &off);
  if (rc < 0) return crL_error_code(L, rc, type_name(flags));
  crL_handle_new(L, CR_OBJ_QUEUE, off);
  return 1;
}

/* Queue(maxsize), or Queue{url=...} for a queue on a Redis server (lredis.c). */
static int l_queue(lua_State *L) {
  if (lua_istable(L, 1)) return crL_redis_queue(L, 0);
  return new_queue(L, check_maxsize(L, "Queue"), 0);
}
static int l_jqueue(lua_State *L) {
  if (lua_istable(L, 1)) return crL_redis_queue(L, CR_QUEUE_JOINABLE);
  return new_queue(L, check_maxsize(L, "JoinableQueue"), CR_QUEUE_JOINABLE);
}
static int l_squeue(lua_State *L) { return new_queue(L, 0, CR_QUEUE_SIMPLE); }

/* ---- put and get ------------------------------------------------------------------ */

/* Strings at least this long go into shared memory straight from the Lua
 * string (one copy), not through an encoded copy first. */
#define DIRECT_STRING 4096

static int do_put(lua_State *L, crL_handle_t *u, double t, int nowait) {
  crL_checkany(L, 2);
  size_t len;
  const char *p;
  int rc;
  if (lua_type(L, 2) == LUA_TSTRING && lua_rawlen(L, 2) >= DIRECT_STRING) {
    char head[CRL_STRHEAD_MAX];
    const char *s = lua_tolstring(L, 2, &len);
    size_t hlen = crL_encode_strhead(len, head);
    rc = cr_queue_put2(arena(L), u->off, head, hlen, s, len, t);
    p = NULL; /* no references to drop: a string holds no handle */
  } else {
    p = crL_encode(L, 2, "item", &len);
    rc = cr_queue_put(arena(L), u->off, p, len, t);
  }
  if (rc != 0 && p) crL_decode_drop(L, p, len); /* the references the message took on handles */
  int n = crL_queue_put_outcome(L, rc, nowait);
  return n >= 0 ? n : crL_error_code(L, rc, "put");
}

int crL_queue_put_outcome(lua_State *L, int rc, int nowait) {
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (nowait && rc == CR_EFULL) return crL_error(L, "Full", "put_nowait: the queue is full");
  if (nowait && rc == CR_ECLOSED) return crL_error(L, "Closed", "put_nowait: the queue is closed");
  if (rc == CR_EFULL || rc == CR_ECLOSED) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, rc == CR_EFULL ? "full" : "closed");
    return 2;
  }
  return -1;
}

static int q_put(lua_State *L) {
  crL_handle_t *u = check_queue(L);
  return do_put(L, u, crL_opttimeout(L, 3), 0);
}

static int q_put_nowait(lua_State *L) { return do_put(L, check_queue(L), 0, 1); }

/* Gets one item from the queue handle at idx: 1 with the value pushed,
 * or 0 with nothing pushed and *why set to "timeout"/"closed". Raises on
 * other failures. */
static int get_one(lua_State *L, int idx, double t, const char **why) {
  crL_handle_t *u = lua_touserdata(L, idx);
  if (u->off == 0) return crL_error_closed(L, crL_handle_name(L, idx));
  crL_sink_t s;
  s.L = L;
  s.raw = 0;
  s.status = LUA_OK;
  s.own_refs = 1;
  s.is_small = 0;
  int rc = cr_queue_get(arena(L), u->off, crL__sink, &s, t);
  if (rc == 0) {
    crL__sink_finish(&s);
    return 1;
  }
  if (rc == CR_EEMPTY) *why = "timeout";
  else if (rc == CR_ECLOSED) *why = "closed";
  else crL_error_code(L, rc, "get");
  return 0;
}

static const crL_getter_t getter = {get_one};

int crL_queue_get(lua_State *L, const crL_getter_t *g) {
  double t = crL_opttimeout(L, 2);
  const char *why;
  if (g->get(L, 1, t, &why)) return 1;
  lua_pushnil(L);
  lua_pushstring(L, why);
  return 2;
}

int crL_queue_get_nowait(lua_State *L, const crL_getter_t *g) {
  const char *why;
  if (g->get(L, 1, 0, &why)) return 1;
  if (why[0] == 't') return crL_error(L, "Empty", "get_nowait: the queue is empty");
  return crL_error(L, "Closed", "get_nowait: the queue is closed and drained");
}

/* upvalues: the queue, t, the getter */
static int iter_next(lua_State *L) {
  const crL_getter_t *g = lua_touserdata(L, lua_upvalueindex(3));
  double t = lua_tonumber(L, lua_upvalueindex(2));
  for (;;) {
    const char *why;
    if (g->get(L, lua_upvalueindex(1), t, &why)) {
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        continue;
      }
      return 1;
    }
    if (why[0] == 'c') return 0; /* closed and drained: the loop ends */
    return crL_error(L, "Timeout", "iter: no item within %f seconds", t);
  }
}

int crL_queue_iter(lua_State *L, const crL_getter_t *g) {
  double t = crL_opttimeout(L, 2);
  lua_settop(L, 1);
  lua_pushnumber(L, t);
  lua_pushlightuserdata(L, (void *)g);
  lua_pushcclosure(L, iter_next, 3);
  return 1;
}

static int q_get(lua_State *L) {
  check_queue(L);
  return crL_queue_get(L, &getter);
}

static int q_get_nowait(lua_State *L) {
  check_queue(L);
  return crL_queue_get_nowait(L, &getter);
}

/* iter([t]) -> iterator for a generic for */
static int q_iter(lua_State *L) {
  check_queue(L);
  return crL_queue_iter(L, &getter);
}

/* ---- sizes, close, joinable -------------------------------------------------------- */

static int q_qsize(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)cr_queue_size(arena(L), check_queue(L)->off));
  return 1;
}

static int q_empty(lua_State *L) {
  lua_pushboolean(L, cr_queue_size(arena(L), check_queue(L)->off) == 0);
  return 1;
}

static int q_full(lua_State *L) {
  crL_handle_t *u = check_queue(L);
  int64_t max = cr_queue_maxsize(arena(L), u->off);
  lua_pushboolean(L, max > 0 && cr_queue_size(arena(L), u->off) >= max);
  return 1;
}

static int q_close(lua_State *L) {
  cr_queue_close(arena(L), check_queue(L)->off);
  return 0;
}

static int q_is_closed(lua_State *L) {
  lua_pushboolean(L, cr_queue_is_closed(arena(L), check_queue(L)->off));
  return 1;
}

static int q_task_done(lua_State *L) {
  crL_handle_t *u = check_joinable(L);
  int rc = cr_queue_task_done(arena(L), u->off);
  if (rc == CR_ETOOMANY) return crL_error(L, cr_err_kind(rc), "task_done() called too many times");
  if (rc < 0) return crL_error_code(L, rc, "task_done");
  return 0;
}

static int q_join(lua_State *L) {
  crL_handle_t *u = check_joinable(L);
  int rc = cr_queue_join(arena(L), u->off, crL_opttimeout(L, 2));
  if (rc == CR_ETIMEDOUT) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (rc < 0) return crL_error_code(L, rc, "join");
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg methods[] = {
  {"put", q_put},     {"get", q_get},     {"put_nowait", q_put_nowait}, {"get_nowait", q_get_nowait},
  {"qsize", q_qsize}, {"empty", q_empty}, {"full", q_full},             {"close", q_close},
  {"is_closed", q_is_closed}, {"iter", q_iter}, {NULL, NULL}};
static const luaL_Reg joinable_methods[] = {{"task_done", q_task_done}, {"join", q_join}, {NULL, NULL}};

/* __close: a to-be-closed queue is closed for every process, as close()
 * does, and this handle is released. */
static int q_close_handle(lua_State *L) {
  crL_handle_t *u = crL_tohandle(L, 1);
  if (u && u->off) cr_queue_close(arena(L), u->off);
  return crL_handle_gc(L);
}

/* __tostring: "Queue(size=2, maxsize=10)", "Queue(size=0, maxsize=0, closed)"
 * (maxsize 0: unbounded); "Queue (closed)" for a released handle. */
static int q_tostring(lua_State *L) {
  crL_handle_t *u = crL_tohandle(L, 1);
  if (!u || !u->off) {
    lua_pushfstring(L, "%s (closed)", crL_handle_name(L, 1));
    return 1;
  }
  cr_arena_t *a = arena(L);
  lua_pushfstring(L, "%s(size=%I, maxsize=%I%s)", type_name(cr_queue_flags(a, u->off)),
                  (lua_Integer)cr_queue_size(a, u->off), (lua_Integer)cr_queue_maxsize(a, u->off),
                  cr_queue_is_closed(a, u->off) ? ", closed" : "");
  return 1;
}

void crL_open_queue(lua_State *L) {
  crL_handle_class(CR_OBJ_QUEUE, &queue_class);
  static const luaL_Reg meta[] = {{"__close", q_close_handle}, {"__tostring", q_tostring}, {NULL, NULL}};
  const char *names[3] = {QUEUE_MT, JQUEUE_MT, SQUEUE_MT};
  for (int i = 0; i < 3; i++) crL_handle_metatable(L, CR_OBJ_QUEUE, names[i], meta, methods);
  crL_handle_methods(L, JQUEUE_MT, joinable_methods);
  static const luaL_Reg fns[] = {{"Queue", l_queue}, {"JoinableQueue", l_jqueue}, {"SimpleQueue", l_squeue},
                                 {NULL, NULL}};
  crL_setfuncs(L, fns);
}
