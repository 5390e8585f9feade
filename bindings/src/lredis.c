/* corral bindings: the Redis backend (engine/include/corral/redis.h).
 *
 *   q = mp.Queue{url = "redis://127.0.0.1:6379", name = "jobs" [, maxsize =]
 *                [, authkey =] [, visibility = 30] [, timeout = 5]}
 *   q = mp.JoinableQueue{url = ..., name = ...}
 *     the local Queue's methods and return conventions (lqueue.c); a
 *     JoinableQueue's task_done marks the oldest item this handle got.
 *     Items travel through the codec without handles. With an authkey
 *     (or CORRAL_AUTHKEY) every item is signed and an item with a missing
 *     or wrong signature raises AuthError at get (it is dropped, never
 *     decoded); without one, items are decoded with functions disabled.
 *
 *   core._redis(url [, timeout]) -> a connection for corral.pool_redis:
 *     c:call(cmd, ...)           -> the reply (nil as false, arrays as tables)
 *     c:eval(script, nkeys, keys..., args...) -> a script's reply (EVALSHA)
 *     c:block(seconds, cmd, ...) -> the same, for a command that blocks on
 *                                   the server for up to seconds
 *     c:beat(stream, group, consumer, interval) -> a heartbeat: b:hold(id|nil), b:stop()
 *     c:url(), c:path(), c:close()
 *   core._hmac(key, data) -> 32 bytes; core._hmac_check(key, data, sig) -> bool
 *
 * Failures raise error objects whose message starts with the url:
 * ConnectionError, AuthError (the server's password, or a signature),
 * RedisError (the server refused a command). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "corral_lua.h"

#ifndef CORRAL_REDIS
int crL_redis_queue(lua_State *L, unsigned flags) {
  return crL_error(L, "ValueError", "%s{url=...}: this corral was built without the Redis backend "
                   "(it needs libhiredis-dev and libssl-dev)", (flags & CR_QUEUE_JOINABLE) ? "JoinableQueue" : "Queue");
}
void crL_open_redis(lua_State *L) { (void)L; }
#else

#define RQUEUE_MT  "corral.RedisQueue"
#define RJQUEUE_MT "corral.RedisJoinableQueue"
#define CONN_MT    "corral.Redis"
#define BEAT_MT    "corral.RedisBeat"

typedef struct {
  cr_rqueue_t *q;
  int signs; /* items are signed: functions may travel */
} rqueue_t;

typedef struct {
  cr_redis_t *c;
} conn_t;

typedef struct {
  cr_redis_beat_t *b;
} beat_t;

static int raise_code(lua_State *L, cr_redis_t *c, int rc, const char *what) {
  if (rc == CR_ECONN || rc == CR_EAUTH || rc == CR_EREDIS)
    return crL_error(L, cr_err_kind(rc), "%s", cr_redis_strerror(c));
  return crL_error_code(L, rc, what);
}

/* ---- the queue --------------------------------------------------------------------- */

static rqueue_t *check_rq(lua_State *L) {
  rqueue_t *u = lua_touserdata(L, 1);
  if (!u || !lua_getmetatable(L, 1)) crL_selferror(L, "Queue");
  luaL_getmetatable(L, RQUEUE_MT);
  luaL_getmetatable(L, RJQUEUE_MT);
  int ok = lua_rawequal(L, -3, -2) || lua_rawequal(L, -3, -1);
  lua_pop(L, 3);
  if (!ok) crL_selferror(L, "Queue");
  if (!u->q) crL_error_closed(L, "Queue");
  return u;
}

static const char *field_string(lua_State *L, int t, const char *k, size_t *len) {
  lua_getfield(L, t, k);
  const char *s = NULL;
  if (lua_type(L, -1) == LUA_TSTRING) s = lua_tolstring(L, -1, len);
  else if (!lua_isnil(L, -1))
    crL_error(L, "ValueError", "%s must be a string, got %s", k, luaL_typename(L, -1));
  lua_pop(L, 1); /* the string stays alive in the options table */
  return s;
}

static double field_number(lua_State *L, int t, const char *k, double def, double lo) {
  lua_getfield(L, t, k);
  double v = def;
  if (!lua_isnil(L, -1)) {
    if (!lua_isnumber(L, -1)) crL_error(L, "ValueError", "%s must be a number, got %s", k, luaL_typename(L, -1));
    v = lua_tonumber(L, -1);
    if (!(v >= lo)) crL_error(L, "ValueError", "%s must be >= %f, got %s", k, lo, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  return v;
}

/* Opens a connection to url or raises an error naming it. */
static cr_redis_t *open_conn(lua_State *L, const char *url, double timeout) {
  cr_redis_t *c;
  char err[512];
  int rc = cr_redis_open(url, timeout, &c, err, sizeof err);
  if (rc < 0) crL_error(L, cr_err_kind(rc), "%s", err);
  return c;
}

/* The signing key: the authkey option, else CORRAL_AUTHKEY, else none. */
static const char *authkey(lua_State *L, int t, size_t *len) {
  const char *k = field_string(L, t, "authkey", len);
  if (!k) {
    k = getenv("CORRAL_AUTHKEY");
    *len = k ? strlen(k) : 0;
  }
  if (k && *len == 0) k = NULL;
  return k;
}

/* Queue{url=, name=, ...} and JoinableQueue{...}: the table at 1. */
int crL_redis_queue(lua_State *L, unsigned flags) {
  static const char *const names[] = {"url", "name", "maxsize", "authkey", "visibility", "timeout", NULL};
  crL_checkopts(L, 1, names);
  const char *what = (flags & CR_QUEUE_JOINABLE) ? "JoinableQueue" : "Queue";
  const char *url = field_string(L, 1, "url", NULL);
  if (!url) return crL_error(L, "ValueError", "%s{...}: url is required (redis://host:port)", what);
  double maxsize = field_number(L, 1, "maxsize", 0, 0);
  if (maxsize != (double)(int64_t)maxsize)
    return crL_error(L, "ValueError", "%s: maxsize must be a non-negative integer", what);
  double vis = field_number(L, 1, "visibility", 30, 0.001);
  double timeout = field_number(L, 1, "timeout", 5, 0);
  size_t klen = 0;
  const char *key = authkey(L, 1, &klen);
  const char *name = field_string(L, 1, "name", NULL);
  rqueue_t *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->q = NULL;
  luaL_setmetatable(L, (flags & CR_QUEUE_JOINABLE) ? RJQUEUE_MT : RQUEUE_MT);
  cr_redis_t *c = open_conn(L, url, timeout);
  if (!name || !*name) name = cr_redis_path(c);
  if (!*name) {
    cr_redis_free(c);
    return crL_error(L, "ValueError", "%s{...}: name is required (or give it as the url's path)", what);
  }
  /* the connection's message outlives it in err: copied before the free */
  char err[512];
  cr_rqueue_t *q;
  snprintf(err, sizeof err, "%s", cr_redis_url(c));
  int rc = cr_rqueue_open(c, name, (int64_t)maxsize, flags, vis, key, klen, &q);
  if (rc < 0) return crL_error(L, cr_err_kind(rc), "%s: cannot open the queue '%s' (%s)", err, name, cr_strerror(rc));
  u->q = q;
  u->signs = key != NULL;
  return 1;
}

static int sink_string(void *ud, const void *data, size_t len) {
  lua_pushlstring((lua_State *)ud, data, len);
  return 0;
}

static int do_put(lua_State *L, rqueue_t *u, double t, int nowait) {
  crL_checkany(L, 2);
  lua_getfield(L, LUA_REGISTRYINDEX, CRL_CORE_KEY);
  lua_getfield(L, -1, "encode"); /* no handles: the far end has no arena */
  lua_pushvalue(L, 2);
  lua_pushliteral(L, "item");
  lua_call(L, 2, 1);
  size_t len;
  const char *p = lua_tolstring(L, -1, &len);
  int vt = lua_type(L, 2);
  if (!u->signs && (vt == LUA_TFUNCTION || vt == LUA_TTABLE)) {
    /* Unsigned, a function would be refused by every reader: say so here. */
    lua_getfield(L, -2, "decode");
    lua_pushvalue(L, -2);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK)
      return crL_error(L, "EncodeError", "put: a function travels to another machine only in a signed item "
                       "(give the queue an authkey, or set CORRAL_AUTHKEY)");
  }
  int rc = cr_rqueue_put(u->q, p, len, t);
  int n = crL_queue_put_outcome(L, rc, nowait);
  return n >= 0 ? n : raise_code(L, cr_rqueue_conn(u->q), rc, "put");
}

static int q_put(lua_State *L) {
  rqueue_t *u = check_rq(L);
  return do_put(L, u, crL_opttimeout(L, 3), 0);
}
static int q_put_nowait(lua_State *L) { return do_put(L, check_rq(L), 0, 1); }

/* The getter of crL_queue_get (corral_lua.h) for the queue at idx. */
static int get_one(lua_State *L, int idx, double t, const char **why) {
  rqueue_t *u = lua_touserdata(L, idx);
  if (!u->q) return crL_error_closed(L, "Queue");
  int top = lua_gettop(L), good = 0;
  int rc = cr_rqueue_get(u->q, sink_string, L, t, &good);
  if (rc == 0) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    int flags = CRL_DECODE_NO_HANDLES | (good ? 0 : CRL_DECODE_NO_FUNCTIONS);
    crL_decode(L, s, len, flags);
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
    return 1;
  }
  lua_settop(L, top);
  if (rc == CR_EEMPTY) *why = "timeout";
  else if (rc == CR_ECLOSED) *why = "closed";
  else if (rc == CR_EAUTH)
    crL_error(L, "AuthError", "%s: queue '%s': an item with a missing or wrong signature was refused (dropped)",
              cr_redis_url(cr_rqueue_conn(u->q)), cr_rqueue_name(u->q));
  else raise_code(L, cr_rqueue_conn(u->q), rc, "get");
  return 0;
}

static const crL_getter_t getter = {get_one};

static int q_get(lua_State *L) {
  check_rq(L);
  return crL_queue_get(L, &getter);
}

static int q_get_nowait(lua_State *L) {
  check_rq(L);
  return crL_queue_get_nowait(L, &getter);
}

static int q_iter(lua_State *L) {
  check_rq(L);
  return crL_queue_iter(L, &getter);
}

static int64_t checked(lua_State *L, rqueue_t *u, int64_t n, const char *what) {
  if (n < 0) raise_code(L, cr_rqueue_conn(u->q), (int)n, what);
  return n;
}

static int q_qsize(lua_State *L) {
  rqueue_t *u = check_rq(L);
  lua_pushinteger(L, (lua_Integer)checked(L, u, cr_rqueue_size(u->q), "qsize"));
  return 1;
}

static int q_empty(lua_State *L) {
  rqueue_t *u = check_rq(L);
  lua_pushboolean(L, checked(L, u, cr_rqueue_size(u->q), "empty") == 0);
  return 1;
}

static int q_full(lua_State *L) {
  rqueue_t *u = check_rq(L);
  int64_t max = cr_rqueue_maxsize(u->q);
  lua_pushboolean(L, max > 0 && checked(L, u, cr_rqueue_size(u->q), "full") >= max);
  return 1;
}

static int q_close(lua_State *L) {
  rqueue_t *u = check_rq(L);
  int rc = cr_rqueue_close(u->q);
  if (rc < 0) raise_code(L, cr_rqueue_conn(u->q), rc, "close");
  return 0;
}

static int q_is_closed(lua_State *L) {
  rqueue_t *u = check_rq(L);
  lua_pushboolean(L, (int)checked(L, u, cr_rqueue_is_closed(u->q), "is_closed"));
  return 1;
}

static int q_task_done(lua_State *L) {
  rqueue_t *u = check_rq(L);
  int rc = cr_rqueue_task_done(u->q);
  if (rc == CR_ETOOMANY) return crL_error(L, "ValueError", "task_done() called too many times");
  if (rc < 0) return raise_code(L, cr_rqueue_conn(u->q), rc, "task_done");
  return 0;
}

static int q_join(lua_State *L) {
  rqueue_t *u = check_rq(L);
  int rc = cr_rqueue_join(u->q, crL_opttimeout(L, 2));
  if (rc == CR_ETIMEDOUT) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (rc < 0) return raise_code(L, cr_rqueue_conn(u->q), rc, "join");
  lua_pushboolean(L, 1);
  return 1;
}

static int q_unfinished(lua_State *L) {
  rqueue_t *u = check_rq(L);
  lua_pushinteger(L, (lua_Integer)checked(L, u, cr_rqueue_unfinished(u->q), "unfinished"));
  return 1;
}

/* Frees the connection (a forked child frees its copy: only its socket). */
static int q_gc(lua_State *L) {
  rqueue_t *u = lua_touserdata(L, 1);
  if (u && u->q) {
    cr_rqueue_free(u->q);
    u->q = NULL;
  }
  return 0;
}

static int q_tostring(lua_State *L) {
  rqueue_t *u = lua_touserdata(L, 1);
  int j = luaL_getmetafield(L, 1, "__joinable") != LUA_TNIL;
  if (j) lua_pop(L, 1);
  if (!u->q) lua_pushfstring(L, "%s (closed)", j ? "JoinableQueue" : "Queue");
  else lua_pushfstring(L, "%s (%s, '%s')", j ? "JoinableQueue" : "Queue", cr_redis_url(cr_rqueue_conn(u->q)),
                       cr_rqueue_name(u->q));
  return 1;
}

/* ---- the raw connection (for corral.pool_redis) ----------------------------------------- */

static conn_t *check_conn(lua_State *L) {
  conn_t *u = crL_checkudata(L, 1, CONN_MT);
  if (!u->c) crL_error_closed(L, "Redis");
  return u;
}

static void push_reply(lua_State *L, const cr_redis_reply_t *r) {
  size_t len;
  const char *s;
  switch (cr_redis_reply_type(r)) {
  case CR_REDIS_STRING:
  case CR_REDIS_STATUS:
  case CR_REDIS_ERROR:
    s = cr_redis_reply_str(r, &len);
    lua_pushlstring(L, s, len);
    break;
  case CR_REDIS_INTEGER: lua_pushinteger(L, (lua_Integer)cr_redis_reply_int(r)); break;
  case CR_REDIS_ARRAY: {
    size_t n = cr_redis_reply_len(r);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
      push_reply(L, cr_redis_reply_at(r, i));
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  }
  default: lua_pushboolean(L, 0); break;
  }
}

static int do_call(lua_State *L, conn_t *u, int first, double block) {
  int argc = lua_gettop(L) - first + 1;
  if (argc < 1) return crL_argerror(L, first, "a command expected");
  const char **argv = lua_newuserdatauv(L, (size_t)argc * (sizeof *argv + sizeof(size_t)), 0);
  size_t *lens = (size_t *)(argv + argc);
  for (int i = 0; i < argc; i++) {
    int idx = first + i;
    if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TNUMBER)
      return crL_argerror(L, idx, "string expected, got %s", luaL_typename(L, idx));
    argv[i] = lua_tolstring(L, idx, &lens[i]);
  }
  cr_redis_reply_t *r;
  int rc = cr_redis_call(u->c, argc, argv, lens, block, -1, &r);
  if (rc < 0) return raise_code(L, u->c, rc, "call");
  push_reply(L, r);
  cr_redis_reply_free(r);
  return 1;
}

static int c_call(lua_State *L) { return do_call(L, check_conn(L), 2, 0); }

/* c:eval(script, nkeys, keys..., args...) */
static int c_eval(lua_State *L) {
  conn_t *u = check_conn(L);
  const char *script = crL_checkstring(L, 2);
  int nkeys = (int)crL_checkinteger(L, 3);
  int argc = lua_gettop(L) - 3;
  if (nkeys < 0 || nkeys > argc) return crL_argerror(L, 3, "bad key count");
  const char **argv = lua_newuserdatauv(L, (size_t)(argc + 1) * (sizeof *argv + sizeof(size_t)), 0);
  size_t *lens = (size_t *)(argv + argc + 1);
  for (int i = 0; i < argc; i++) {
    int idx = 4 + i;
    if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TNUMBER)
      return crL_argerror(L, idx, "string expected, got %s", luaL_typename(L, idx));
    argv[i] = lua_tolstring(L, idx, &lens[i]);
  }
  cr_redis_reply_t *r;
  int rc = cr_redis_eval(u->c, script, nkeys, argc, argv, lens, -1, &r);
  if (rc < 0) return raise_code(L, u->c, rc, "eval");
  push_reply(L, r);
  cr_redis_reply_free(r);
  return 1;
}

static int c_block(lua_State *L) {
  conn_t *u = check_conn(L);
  double t = crL_checknumber(L, 2);
  return do_call(L, u, 3, t > 0 ? t : 0);
}

static int c_url(lua_State *L) {
  lua_pushstring(L, cr_redis_url(check_conn(L)->c));
  return 1;
}

static int c_path(lua_State *L) {
  lua_pushstring(L, cr_redis_path(check_conn(L)->c));
  return 1;
}

static int c_gc(lua_State *L) {
  conn_t *u = lua_touserdata(L, 1);
  if (u && u->c) {
    cr_redis_free(u->c);
    u->c = NULL;
  }
  return 0;
}

static int c_beat(lua_State *L) {
  conn_t *u = check_conn(L);
  const char *stream = crL_checkstring(L, 2), *group = crL_checkstring(L, 3), *consumer = crL_checkstring(L, 4);
  double interval = crL_checknumber(L, 5);
  beat_t *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->b = NULL;
  luaL_setmetatable(L, BEAT_MT);
  int rc = cr_redis_beat_start(u->c, stream, group, consumer, interval, &b->b);
  if (rc < 0) return crL_error_code(L, rc, "heartbeat");
  return 1;
}

static int b_hold(lua_State *L) {
  beat_t *b = crL_checkudata(L, 1, BEAT_MT);
  if (b->b) cr_redis_beat_hold(b->b, lua_isnoneornil(L, 2) ? NULL : crL_checkstring(L, 2));
  return 0;
}

static int b_gc(lua_State *L) {
  beat_t *b = lua_touserdata(L, 1);
  if (b && b->b) {
    cr_redis_beat_stop(b->b);
    b->b = NULL;
  }
  return 0;
}

static int l_redis(lua_State *L) {
  const char *url = crL_checkstring(L, 1);
  double t = lua_isnoneornil(L, 2) ? -1 : crL_checknumber(L, 2);
  conn_t *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->c = NULL;
  luaL_setmetatable(L, CONN_MT);
  u->c = open_conn(L, url, t);
  return 1;
}

static int l_hmac(lua_State *L) {
  size_t kl, dl;
  const char *k = crL_checklstring(L, 1, &kl), *d = crL_checklstring(L, 2, &dl);
  unsigned char mac[CR_HMAC_LEN];
  cr_hmac_sha256(k, kl, d, dl, mac);
  lua_pushlstring(L, (const char *)mac, CR_HMAC_LEN);
  return 1;
}

static int l_hmac_check(lua_State *L) {
  size_t kl, dl, sl;
  const char *k = crL_checklstring(L, 1, &kl), *d = crL_checklstring(L, 2, &dl), *s = crL_checklstring(L, 3, &sl);
  lua_pushboolean(L, cr_hmac_check(k, kl, d, dl, s, sl));
  return 1;
}

static void metatable(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__close");
  lua_newtable(L);
  for (const luaL_Reg *r = methods; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  lua_setfield(L, -2, "__index");
}

void crL_open_redis(lua_State *L) {
  static const luaL_Reg qm[] = {
    {"put", q_put},     {"get", q_get},     {"put_nowait", q_put_nowait}, {"get_nowait", q_get_nowait},
    {"qsize", q_qsize}, {"empty", q_empty}, {"full", q_full},             {"close", q_close},
    {"is_closed", q_is_closed}, {"iter", q_iter}, {NULL, NULL}};
  static const luaL_Reg jm[] = {
    {"put", q_put},     {"get", q_get},     {"put_nowait", q_put_nowait}, {"get_nowait", q_get_nowait},
    {"qsize", q_qsize}, {"empty", q_empty}, {"full", q_full},             {"close", q_close},
    {"is_closed", q_is_closed}, {"iter", q_iter}, {"task_done", q_task_done}, {"join", q_join},
    {"unfinished", q_unfinished}, {NULL, NULL}};
  metatable(L, RQUEUE_MT, qm, q_gc);
  lua_pushcfunction(L, q_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  metatable(L, RJQUEUE_MT, jm, q_gc);
  lua_pushcfunction(L, q_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "__joinable");
  lua_pop(L, 1);
  static const luaL_Reg cm[] = {{"call", c_call}, {"eval", c_eval}, {"block", c_block}, {"beat", c_beat}, {"url", c_url},
                                {"path", c_path}, {"close", c_gc}, {NULL, NULL}};
  metatable(L, CONN_MT, cm, c_gc);
  lua_pop(L, 1);
  static const luaL_Reg bm[] = {{"hold", b_hold}, {"stop", b_gc}, {NULL, NULL}};
  metatable(L, BEAT_MT, bm, b_gc);
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"_redis", l_redis}, {"_hmac", l_hmac}, {"_hmac_check", l_hmac_check},
                                 {NULL, NULL}};
  crL_setfuncs(L, fns);
}
#endif
