/* corral bindings: the trace sink and the logger, for the Lua side.
 *
 * Thin wrappers over corral/trace.h and corral/log.h; the public Lua API
 * is in bindings/lua/trace.lua and log.lua. Times given from Lua are
 * seconds of mp.time() (the same CLOCK_MONOTONIC as the engine's).
 * Event args are a table of string keys and plain values, or, on the hot
 * path of a pool's tasks, key/value pairs as extra arguments (no table to
 * build). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "corral_lua.h"

static int64_t ns_of(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return cr_trace_now();
  return (int64_t)(crL_checknumber(L, arg) * 1e9 + 0.5);
}

#define ARGS_CAP 4096 /* an event's args: pairs past this are left out */

typedef struct {
  char p[ARGS_CAP + 2]; /* room for the closing brace and NUL */
  size_t n;
} args_t;

/* Appends the value at idx as JSON; 0 when it does not fit. Strings,
 * numbers and booleans are themselves; anything else is its type name
 * (no metamethod runs: nothing here raises). */
static int json_value(args_t *a, lua_State *L, int idx) {
  char tmp[64];
  const char *s = tmp;
  size_t len;
  switch (lua_type(L, idx)) {
  case LUA_TBOOLEAN: s = lua_toboolean(L, idx) ? "true" : "false"; break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      snprintf(tmp, sizeof tmp, LUA_INTEGER_FMT, lua_tointeger(L, idx));
    } else {
      double d = lua_tonumber(L, idx);
      if (isnan(d) || isinf(d)) snprintf(tmp, sizeof tmp, "null");
      else snprintf(tmp, sizeof tmp, "%.17g", d);
    }
    break;
  case LUA_TSTRING: {
    const char *str = lua_tolstring(L, idx, &len);
    int n = cr_trace_json_string(a->p + a->n, ARGS_CAP - a->n, str, len);
    if (n < 0) return 0;
    a->n += (size_t)n;
    return 1;
  }
  default: {
    const char *tn = luaL_typename(L, idx);
    int n = cr_trace_json_string(a->p + a->n, ARGS_CAP - a->n, tn, strlen(tn));
    if (n < 0) return 0;
    a->n += (size_t)n;
    return 1;
  }
  }
  len = strlen(s);
  if (a->n + len >= ARGS_CAP) return 0;
  memcpy(a->p + a->n, s, len);
  a->n += len;
  return 1;
}

/* Appends "key":value (with the comma before it, or the opening brace);
 * a pair that does not fit is left out whole. */
static void json_pair(args_t *a, lua_State *L, int k, int v) {
  size_t mark = a->n;
  if (a->n + 2 >= ARGS_CAP) return;
  a->p[a->n++] = mark == 0 ? '{' : ',';
  int ok;
  if (lua_type(L, k) == LUA_TSTRING) {
    ok = json_value(a, L, k);
  } else { /* a number key is written as a string */
    char tmp[64];
    if (lua_isinteger(L, k)) snprintf(tmp, sizeof tmp, LUA_INTEGER_FMT, lua_tointeger(L, k));
    else snprintf(tmp, sizeof tmp, "%.17g", lua_tonumber(L, k));
    int n = cr_trace_json_string(a->p + a->n, ARGS_CAP - a->n, tmp, strlen(tmp));
    ok = n > 0;
    if (ok) a->n += (size_t)n;
  }
  if (ok && a->n + 1 < ARGS_CAP) {
    a->p[a->n++] = ':';
    ok = json_value(a, L, v);
  } else {
    ok = 0;
  }
  if (!ok) a->n = mark;
}

/* The args of an event from the arguments at from..top: nil/none (NULL),
 * a table, or key/value pairs; the JSON text in a, NUL-terminated. */
static const char *make_args(args_t *a, lua_State *L, int from) {
  int top = lua_gettop(L);
  a->n = 0;
  if (from > top || lua_isnil(L, from)) return NULL;
  if (lua_istable(L, from)) {
    lua_pushnil(L);
    while (lua_next(L, from)) {
      int kt = lua_type(L, -2);
      if (kt == LUA_TSTRING || kt == LUA_TNUMBER) json_pair(a, L, -2, -1);
      lua_pop(L, 1);
    }
  } else {
    for (int i = from; i + 1 <= top; i += 2)
      if (lua_type(L, i) == LUA_TSTRING || lua_type(L, i) == LUA_TNUMBER) json_pair(a, L, i, i + 1);
  }
  if (a->n == 0) a->p[a->n++] = '{';
  a->p[a->n++] = '}';
  a->p[a->n] = 0;
  return a->p;
}

/* _trace_open(path) -> true, or nil, message, errno name */
static int l_open(lua_State *L) {
  const char *path = crL_checkstring(L, 1);
  int rc = cr_trace_open(path, 1);
  if (rc < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot open the trace file '%s': %s", path, strerror(-rc));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_close(lua_State *L) {
  (void)L;
  cr_trace_close();
  return 0;
}

static int l_on(lua_State *L) {
  lua_pushboolean(L, cr_trace_on());
  return 1;
}

static int l_path(lua_State *L) {
  const char *p = cr_trace_path();
  if (p) lua_pushstring(L, p);
  else lua_pushnil(L);
  return 1;
}

static int l_flush(lua_State *L) {
  (void)L;
  cr_trace_flush();
  return 0;
}

/* _trace_name(pid, name): pid 0 is this process. */
static int l_name(lua_State *L) {
  cr_trace_name((int)crL_checkinteger(L, 1), crL_checkstring(L, 2));
  return 0;
}

/* _trace_slice(name, cat, t0 [, t1 [, args...]]): t1 nil is now. */
static int l_slice(lua_State *L) {
  if (!cr_trace_on()) return 0;
  const char *name = crL_checkstring(L, 1);
  const char *cat = crL_optstring(L, 2, NULL);
  int64_t t0 = ns_of(L, 3), t1 = ns_of(L, 4);
  args_t a;
  cr_trace_slice(0, name, cat, t0, t1, make_args(&a, L, 5));
  return 0;
}

/* _trace_task(name, t0, t1, batch, task, items [, flush]): a pool task's
 * slice; flush: then write what is buffered. */
static int l_task(lua_State *L) {
  if (!cr_trace_on()) return 0;
  cr_trace_task(lua_tostring(L, 1), ns_of(L, 2), ns_of(L, 3), lua_tointeger(L, 4), lua_tointeger(L, 5),
                lua_tointeger(L, 6));
  if (lua_toboolean(L, 7)) cr_trace_flush();
  return 0;
}

/* _trace_instant(name, cat, pid [, args...]): pid nil or 0 is this process. */
static int l_instant(lua_State *L) {
  if (!cr_trace_on()) return 0;
  const char *name = crL_checkstring(L, 1);
  const char *cat = crL_optstring(L, 2, NULL);
  int pid = (int)crL_optinteger(L, 3, 0);
  args_t a;
  cr_trace_instant(pid, name, cat, cr_trace_now(), make_args(&a, L, 4));
  return 0;
}

/* _trace_counter(name, values...): on this process's counter track `name`. */
static int l_counter(lua_State *L) {
  if (!cr_trace_on()) return 0;
  const char *name = crL_checkstring(L, 1);
  args_t a;
  cr_trace_counter(0, name, cr_trace_now(), make_args(&a, L, 2));
  return 0;
}

/* _trace_flow(ph, id, name [, cat [, t]]): ph "s", "t" or "f". */
static int l_flow(lua_State *L) {
  if (!cr_trace_on()) return 0;
  const char *ph = crL_checkstring(L, 1);
  lua_Integer id = crL_checkinteger(L, 2);
  const char *name = crL_checkstring(L, 3);
  const char *cat = crL_optstring(L, 4, NULL);
  cr_trace_flow(ph[0], name, cat, (uint64_t)id, ns_of(L, 5));
  return 0;
}

/* ---- the logger ------------------------------------------------------------------ */

/* _log(level, message) */
static int l_log(lua_State *L) {
  int level = (int)crL_checkinteger(L, 1);
  if (!cr_log_enabled(level)) return 0;
  size_t len;
  const char *msg = crL_checklstring(L, 2, &len);
  cr_log_write(level, msg, len);
  return 0;
}

/* _log_level([level]) -> the level (before the change) */
static int l_log_level(lua_State *L) {
  lua_pushinteger(L, cr_log_level());
  if (!lua_isnoneornil(L, 1)) cr_log_set_level((int)crL_checkinteger(L, 1));
  return 1;
}

void crL_open_trace(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"_trace_open", l_open},       {"_trace_close", l_close},   {"_trace_on", l_on},
      {"_trace_path", l_path},       {"_trace_flush", l_flush},   {"_trace_name", l_name},
      {"_trace_slice", l_slice},     {"_trace_task", l_task},     {"_trace_instant", l_instant}, {"_trace_counter", l_counter},
      {"_trace_flow", l_flow},       {"_log", l_log},             {"_log_level", l_log_level},
      {NULL, NULL}};
  crL_setfuncs(L, fns);
}
