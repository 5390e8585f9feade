/* corral fuzzing: the decoder against arbitrary bytes.
 *
 * One entry point, LLVMFuzzerTestOneInput, shared by the libFuzzer target
 * (corral_fuzz_codec) and the corpus replay (corral_codec_replay). The bytes
 * are decoded as data from outside the engine (no functions, no handles) in a
 * state with the corral module opened, after their handle section is walked
 * as the Manager walks stored values (which never raises). Whatever decodes
 * must encode again and decode again; then the bytes are decoded into a
 * table at an offset, as arrays of results are. Anything else than success
 * or a DecodeError aborts. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *fuzz_state(void) {
  static lua_State *L;
  if (!L) {
    L = luaL_newstate();
    if (!L) abort();
    luaL_openlibs(L);
    luaL_requiref(L, "corral", luaopen_corral, 0);
    lua_pop(L, 1);
  }
  return L;
}

static void count_handle(void *ud, uint32_t kind, cr_off_t off) {
  (void)kind;
  (void)off;
  ++*(size_t *)ud;
}

/* (bytes): walks the handle section, decodes, encodes the value again and
 * decodes that; then decodes the bytes into a table, from position 3 on. */
static int one_input(lua_State *L) {
  size_t n;
  const char *p = lua_tolstring(L, 1, &n);
  size_t handles = 0;
  crL_codec_each_handle(p, n, count_handle, &handles);
  const int untrusted = CRL_DECODE_NO_FUNCTIONS | CRL_DECODE_NO_HANDLES;
  crL_decode(L, p, n, untrusted);
  size_t n1;
  const char *s1 = crL_encode(L, -1, "fuzz", &n1);
  crL_decode(L, s1, n1, untrusted);
  lua_newtable(L);
  crL_decode_into(L, p, n, untrusted, -1, 3);
  return 0;
}

static int is_decode_error(lua_State *L) {
  if (!lua_istable(L, -1)) return 0;
  lua_getfield(L, -1, "kind");
  int ok = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "DecodeError") == 0;
  lua_pop(L, 1);
  return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static unsigned runs;
  lua_State *L = fuzz_state();
  lua_settop(L, 0);
  lua_pushcfunction(L, one_input);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK && !is_decode_error(L)) {
    fprintf(stderr, "unexpected error: %s\n", luaL_tolstring(L, -1, NULL));
    abort();
  }
  lua_settop(L, 0);
  if (++runs % 4096 == 0) lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
