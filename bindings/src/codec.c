/* PLACEHOLDER: replaced by the real value codec. Strings only. */
#include <string.h>
#include "corral_lua.h"
const char *crL_encode(lua_State *L, int idx, const char *root, size_t *len) {
  if (lua_type(L, idx) != LUA_TSTRING) crL_error(L, "EncodeError", "%s: placeholder codec", root);
  lua_pushvalue(L, idx);
  return lua_tolstring(L, -1, len);
}
void crL_decode(lua_State *L, const char *p, size_t len, int flags) {
  (void)flags;
  lua_pushlstring(L, p, len);
}
void crL_open_codec(lua_State *L) { (void)L; }
