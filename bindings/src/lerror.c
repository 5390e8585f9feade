/* corral bindings: error objects.
 *
 * An error object is a table {kind=, message=, where=[, traceback=, pid=,
 * index=]} with metatable "corral.Error"; tostring gives "where: Kind:
 * message", then " (in process PID, item N)" and, on the next lines, the
 * traceback of the process it came from, when it has them.
 * Every error the module raises is built here: the argument checks below
 * stand in for luaL_check* (which raise plain strings), and `where` is
 * always the line of the user's code that made the call. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "corral_lua.h"

#define ERROR_MT "corral.Error"

/* How the companion modules' chunks are named (tools/embed_lua.cmake). A
 * chunkname starting with '=' never comes from a file, so no user code
 * can be taken for corral's own. */
#define CORRAL_CHUNK "=corral/"

void crL_where(lua_State *L) { crL_where_from(L, 1); }

void crL_where_from(lua_State *L, int from) {
  lua_Debug ar;
  int fallback = 0;
  for (int level = from; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sl", &ar);
    if (ar.currentline <= 0) continue; /* a C function, or no line information */
    if (strncmp(ar.source, CORRAL_CHUNK, sizeof CORRAL_CHUNK - 1) != 0) {
      lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
      return;
    }
    if (!fallback) fallback = level;
  }
  if (fallback) luaL_where(L, fallback);
  else lua_pushliteral(L, "");
}

static void push_errorv(lua_State *L, int with_where, const char *kind, const char *fmt, va_list ap) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushvfstring(L, fmt, ap);
  lua_setfield(L, -2, "message");
  if (with_where) {
    crL_where(L);
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

/* ---- argument checks ------------------------------------------------------ */

/* Pushes the name of the running C function for a "bad argument" message
 * and returns it: the name its caller used (q:get gives 'get', and then
 * *arg does not count self, as Lua's own messages), else the key it has
 * in its type's methods ('Queue.get') or in the module ('corral.sleep'),
 * else '?'. */
static const char *push_fname(lua_State *L, int *arg) {
  lua_Debug ar;
  if (!lua_getstack(L, 0, &ar)) return lua_pushliteral(L, "?");
  lua_getinfo(L, "nf", &ar); /* pushes the function */
  int fn = lua_gettop(L);
  if (ar.name) {
    if (ar.namewhat && strcmp(ar.namewhat, "method") == 0) (*arg)--;
    return lua_pushstring(L, ar.name);
  }
  /* A method carries its metatable as upvalue 1 (crL_handle_metatable). */
  if (lua_getupvalue(L, fn, 1) && lua_istable(L, -1)) {
    int mt = lua_gettop(L);
    if (lua_getfield(L, mt, "__index") == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        if (lua_rawequal(L, -1, fn) && lua_type(L, -2) == LUA_TSTRING) {
          lua_getfield(L, mt, "__name");
          const char *tname = lua_isstring(L, -1) ? lua_tostring(L, -1) : "?";
          const char *dot = strchr(tname, '.');
          return lua_pushfstring(L, "%s.%s", dot ? dot + 1 : tname, lua_tostring(L, -3));
        }
        lua_pop(L, 1);
      }
    }
  }
  lua_settop(L, fn);
  lua_getfield(L, LUA_REGISTRYINDEX, CRL_CORE_KEY);
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_rawequal(L, -1, fn) && lua_type(L, -2) == LUA_TSTRING)
        return lua_pushfstring(L, "corral.%s", lua_tostring(L, -2));
      lua_pop(L, 1);
    }
  }
  return lua_pushliteral(L, "?");
}

/* The type a "got ..." names: a __name metafield, else the Lua type. */
static const char *got_name(lua_State *L, int arg) {
  if (luaL_getmetafield(L, arg, "__name") == LUA_TSTRING) return lua_tostring(L, -1);
  if (lua_type(L, arg) == LUA_TLIGHTUSERDATA) return "light userdata";
  return luaL_typename(L, arg);
}

int crL_argerror(lua_State *L, int arg, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *why = lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  const char *fname = push_fname(L, &arg);
  if (arg == 0) return crL_error(L, "TypeError", "calling '%s' on bad self (%s)", fname, why);
  return crL_error(L, "ValueError", "bad argument #%d to '%s' (%s)", arg, fname, why);
}

int crL_typeerror(lua_State *L, int arg, const char *tname) {
  return crL_argerror(L, arg, "%s expected, got %s", tname, got_name(L, arg));
}

int crL_selferror(lua_State *L, const char *tname) {
  const char *got = got_name(L, 1);
  int arg = 1;
  const char *fname = push_fname(L, &arg);
  if (strcmp(fname, "?") == 0) return crL_error(L, "TypeError", "bad self (%s expected, got %s)", tname, got);
  return crL_error(L, "TypeError", "calling '%s' on bad self (%s expected, got %s)", fname, tname, got);
}

int crL_objecterror(lua_State *L, int arg, const char *tname) {
  return arg == 1 ? crL_selferror(L, tname) : crL_typeerror(L, arg, tname);
}

lua_Integer crL_checkinteger(lua_State *L, int arg) {
  int isnum;
  lua_Integer n = lua_tointegerx(L, arg, &isnum);
  if (!isnum) {
    if (lua_isnumber(L, arg)) crL_argerror(L, arg, "number has no integer representation");
    else crL_typeerror(L, arg, "number");
  }
  return n;
}

lua_Integer crL_optinteger(lua_State *L, int arg, lua_Integer def) {
  return lua_isnoneornil(L, arg) ? def : crL_checkinteger(L, arg);
}

lua_Number crL_checknumber(lua_State *L, int arg) {
  int isnum;
  lua_Number n = lua_tonumberx(L, arg, &isnum);
  if (!isnum) crL_typeerror(L, arg, "number");
  return n;
}

const char *crL_checklstring(lua_State *L, int arg, size_t *len) {
  const char *s = lua_tolstring(L, arg, len);
  if (!s) crL_typeerror(L, arg, "string");
  return s;
}

const char *crL_optlstring(lua_State *L, int arg, const char *def, size_t *len) {
  if (!lua_isnoneornil(L, arg)) return crL_checklstring(L, arg, len);
  if (len) *len = def ? strlen(def) : 0;
  return def;
}

void crL_checktype(lua_State *L, int arg, int t) {
  if (lua_type(L, arg) != t) crL_typeerror(L, arg, lua_typename(L, t));
}

void crL_checkany(lua_State *L, int arg) {
  if (lua_type(L, arg) == LUA_TNONE) crL_argerror(L, arg, "value expected");
}

void crL_checkcallable(lua_State *L, int arg) {
  if (lua_isfunction(L, arg)) return;
  if (luaL_getmetafield(L, arg, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  crL_typeerror(L, arg, "function");
}

void *crL_checkudata(lua_State *L, int arg, const char *tname) {
  void *p = luaL_testudata(L, arg, tname);
  if (!p) crL_typeerror(L, arg, tname);
  return p;
}

void crL_checkopts(lua_State *L, int arg, const char *const names[]) {
  if (lua_isnoneornil(L, arg)) return;
  crL_checktype(L, arg, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    int i = 0;
    while (k && names[i] && strcmp(names[i], k) != 0) i++;
    if (!k || !names[i]) crL_argerror(L, arg, "unknown option '%s'", luaL_tolstring(L, -1, NULL));
  }
}

double crL_opttimeout(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return -1;
  if (!lua_isnumber(L, arg))
    return crL_argerror(L, arg, "timeout must be a number of seconds or nil, got %s", luaL_typename(L, arg));
  double t = lua_tonumber(L, arg);
  if (isnan(t) || t < 0) return crL_argerror(L, arg, "timeout must be >= 0, got %s", lua_tostring(L, arg));
  return t;
}

static int error_tostring(lua_State *L) {
  crL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "where");
  lua_getfield(L, 1, "kind");
  lua_getfield(L, 1, "message");
  lua_getfield(L, 1, "pid");
  lua_getfield(L, 1, "index");
  lua_getfield(L, 1, "traceback");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (lua_isstring(L, 2)) luaL_addstring(&b, lua_tostring(L, 2));
  luaL_addstring(&b, lua_isstring(L, 3) ? lua_tostring(L, 3) : "Error");
  luaL_addstring(&b, ": ");
  luaL_addstring(&b, lua_isstring(L, 4) ? lua_tostring(L, 4) : "?");
  int pid = lua_isinteger(L, 5), index = lua_isinteger(L, 6);
  if (pid && index) lua_pushfstring(L, " (in process %d, item %I)", (int)lua_tointeger(L, 5),
                                     (LUAI_UACINT)lua_tointeger(L, 6));
  else if (pid) lua_pushfstring(L, " (in process %d)", (int)lua_tointeger(L, 5));
  else if (index) lua_pushfstring(L, " (item %I)", (LUAI_UACINT)lua_tointeger(L, 6));
  if (pid || index) luaL_addvalue(&b);
  if (lua_type(L, 7) == LUA_TSTRING) {
    luaL_addchar(&b, '\n');
    lua_pushvalue(L, 7);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  return 1;
}

/* Whether the string at idx is the error Lua's own SIGINT hook raises
 * ("interrupted!", after luaL_error's "chunk:line: "): lua5.4's, and a
 * child's (lproc.c). */
static int is_hook_interrupt(lua_State *L, int idx) {
  static const char tail[] = "interrupted!";
  size_t n, t = sizeof tail - 1;
  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  const char *s = lua_tolstring(L, idx, &n);
  return n >= t && memcmp(s + n - t, tail, t) == 0;
}

int crL_iserror(lua_State *L, int idx, const char *kind) {
  int ok = 0;
  idx = lua_absindex(L, idx);
  /* Ctrl-C is one thing to test for, wherever it landed: in a corral
   * wait (the Interrupted object) or between two (the hook's string). */
  if (kind && strcmp(kind, "Interrupted") == 0 && is_hook_interrupt(L, idx)) return 1;
  if (lua_getmetatable(L, idx)) {
    luaL_getmetatable(L, ERROR_MT);
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (ok && kind) {
    lua_getfield(L, idx, "kind");
    ok = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), kind) == 0;
    lua_pop(L, 1);
  }
  return ok;
}

/* iserror(v [, kind]): v is an error object (of that kind). */
static int l_iserror(lua_State *L) {
  const char *want = lua_isnoneornil(L, 2) ? NULL : crL_checkstring(L, 2);
  lua_pushboolean(L, crL_iserror(L, 1, want));
  return 1;
}

/* _newerror(kind, message [, fields]) -> error object (not raised). */
static int l_newerror(lua_State *L) {
  const char *kind = crL_checkstring(L, 1);
  const char *msg = crL_checkstring(L, 2);
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

/* _where() -> "file:line: " of the caller's line outside corral (crL_where). */
static int l_where(lua_State *L) {
  crL_where(L);
  return 1;
}

/* _raise(kind, message [, level]): raises an error object whose where is
 * the caller's line outside corral (crL_where), whatever the depth of the
 * companion code in between; level 0 gives no where. */
static int l_raise(lua_State *L) {
  const char *kind = crL_checkstring(L, 1);
  const char *msg = crL_checkstring(L, 2);
  int level = (int)crL_optinteger(L, 3, 1);
  crL_pusherror(L, kind, "%s", msg);
  if (level != 0) {
    crL_where(L);
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
    {"iserror", l_iserror}, {"_newerror", l_newerror}, {"_raise", l_raise}, {"_where", l_where}, {NULL, NULL}};
  crL_setfuncs(L, fns);
}
