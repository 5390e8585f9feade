/* corral bindings: error objects.
 *
 * An error object is a table {kind=, message=, where=[, traceback=, pid=]}
 * with metatable "corral.Error"; tostring gives "where: Kind: message". */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "corral_lua.h"

#define ERROR_MT "corral.Error"

static void push_errorv(lua_State *L, int level, const char *kind, const char *fmt, va_list ap) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushvfstring(L, fmt, ap);
  lua_setfield(L, -2, "message");
  if (level > 0) {
    luaL_where(L, level);
    lua_setfield(L, -2, "where");
  }
  luaL_setmetatable(L, ERROR_MT);
}

void crL_pusherror(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_errorv(L, 0, kind, fmt, ap);
  va_end(ap);
}

int crL_error(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_errorv(L, 1, kind, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

int crL_error_code(lua_State *L, int code, const char *what) {
  if (code == CR_EINTR) cr_intr_clear();
  return crL_error(L, cr_err_kind(code), "%s: %s", what, cr_strerror(code));
}

int crL_error_closed(lua_State *L, const char *tname) {
  return crL_error(L, "Closed", "attempt to use a closed %s", tname);
}

double crL_opttimeout(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return -1;
  if (!lua_isnumber(L, arg))
    return crL_error(L, "ValueError", "bad argument #%d (timeout must be a number of seconds or nil, got %s)",
                     arg, luaL_typename(L, arg));
  double t = lua_tonumber(L, arg);
  if (isnan(t) || t < 0)
    return crL_error(L, "ValueError", "bad argument #%d (timeout must be >= 0, got %s)", arg,
                     lua_tostring(L, arg));
  return t;
}

static int error_tostring(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "where");
  lua_getfield(L, 1, "kind");
  lua_getfield(L, 1, "message");
  lua_getfield(L, 1, "pid");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (lua_isstring(L, 2)) luaL_addstring(&b, lua_tostring(L, 2));
  luaL_addstring(&b, lua_isstring(L, 3) ? lua_tostring(L, 3) : "Error");
  luaL_addstring(&b, ": ");
  luaL_addstring(&b, lua_isstring(L, 4) ? lua_tostring(L, 4) : "?");
  if (lua_isinteger(L, 5)) {
    lua_pushfstring(L, " (in process %d)", (int)lua_tointeger(L, 5));
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  return 1;
}

/* iserror(v [, kind]): v is an error object (of that kind). */
static int l_iserror(lua_State *L) {
  int ok = 0;
  if (lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, ERROR_MT);
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (ok && !lua_isnoneornil(L, 2)) {
    const char *want = luaL_checkstring(L, 2);
    lua_getfield(L, 1, "kind");
    ok = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), want) == 0;
  }
  lua_pushboolean(L, ok);
  return 1;
}

/* _newerror(kind, message [, fields]) -> error object (not raised). */
static int l_newerror(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  const char *msg = luaL_checkstring(L, 2);
  crL_pusherror(L, kind, "%s", msg);
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, -4);
    }
  }
  return 1;
}

/* _raise(kind, message [, level]): raises with "where" of the given level,
 * counted as by error(): 1 = the function that calls _raise, 2 = its caller. */
static int l_raise(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  const char *msg = luaL_checkstring(L, 2);
  int level = (int)luaL_optinteger(L, 3, 1);
  crL_pusherror(L, kind, "%s", msg);
  if (level > 0) {
    luaL_where(L, level);
    lua_setfield(L, -2, "where");
  }
  return lua_error(L);
}

void crL_open_errors(lua_State *L) {
  if (luaL_newmetatable(L, ERROR_MT)) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_setfield(L, -2, "_Error");
  static const luaL_Reg fns[] = {
    {"iserror", l_iserror}, {"_newerror", l_newerror}, {"_raise", l_raise}, {NULL, NULL}};
  crL_setfuncs(L, fns);
}
