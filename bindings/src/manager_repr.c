/* corral bindings: tostring(proxy), the contents as Python prints them
 * ([1, 'a'], {'k': 2}, Namespace(x=1)): strings in single quotes, None,
 * True/False, 2.0 for a float with an integer value, an array table as a
 * list, any other table as a dict.
 *
 * Why not the REPL's printer (bindings/cli/pretty.c): that one shows a
 * value as Lua source ({ 1, "a", k = 2 }, double quotes, nil), sorts keys,
 * breaks long tables over indented lines and marks cycles, for a person at
 * the prompt; this one reproduces Python's notation on one line, as
 * docs/api.md promises for proxies. The two share no output format, and
 * pretty.c belongs to the executable, which the module cannot depend on. */
#include <math.h>
#include <stdio.h>

#include "manager_int.h"

/* Pieces of the text are appended to the table at `out` (no luaL_Buffer,
 * whose stack slot would have to stay on top): the value on top, popped. */
static void add_top(lua_State *L, int out) { lua_rawseti(L, out, (lua_Integer)lua_rawlen(L, out) + 1); }

static void put(lua_State *L, int out, const char *s) {
  lua_pushstring(L, s);
  add_top(L, out);
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
  add_top(L, out);
}

/* The value at idx as Python's repr shows it. */
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
      add_top(L, out);
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
      add_top(L, out);
      return;
  }
}

/* __tostring of every proxy: "[1, 'a']", "{'k': 2}", "Namespace(x=1)";
 * "ListProxy (closed)" or "(shut down)" once the proxy cannot be read. */
int mgr_tostring(lua_State *L) {
  mud_t *u = lua_touserdata(L, 1);
  if (!u->h.off || cr_managed_is_closed(u->a, u->h.off)) {
    lua_pushfstring(L, "%s (%s)", mgr_type_name(u->type), u->h.off ? "shut down" : "closed");
    return 1;
  }
  mgr_snapshot_flat(L, 1, u);
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
        add_top(L, out);
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

