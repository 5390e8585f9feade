/* corral bindings: the read sink, which turns a message in shared memory
 * into a Lua value (queues, pipes, the Manager's containers).
 *
 * It runs inside the engine's read while the message is held (a queue slot,
 * a container's lock), so it decodes under lua_pcall (a DecodeError or a
 * memory error must not unwind through the engine) and the caller raises
 * afterwards, once the engine has let go. */
#ifndef CORRAL_SINK_H
#define CORRAL_SINK_H

#include <string.h>

#include "corral_lua.h"

#define CRL_SMALL_MSG 256

typedef struct {
  lua_State *L;
  int raw;    /* push the bytes as a string instead of decoding */
  int status; /* lua_pcall status; the value or error is on top */
  int own_refs; /* a large message's handles take references of their own (a channel) */
  size_t small_len; /* a small message is copied here, to decode later */
  int is_small;
  char small[CRL_SMALL_MSG];
} crL_sink_t;

static inline int crL__decode_thunk(lua_State *L) {
  const char *p = lua_touserdata(L, 1);
  size_t n = (size_t)lua_tointeger(L, 2);
  if (lua_toboolean(L, 3)) lua_pushlstring(L, p, n);
  else crL_decode(L, p, n, (int)lua_tointeger(L, 4));
  return 1;
}

/* cr_chan_sink_fn and cr_managed_sink_fn: a small message is copied aside
 * (cheaper than a protected call; crL__sink_finish decodes it once the
 * engine has let go, adopting the references of the copy); a large one is
 * decoded straight from shared memory under lua_pcall. For a channel
 * (own_refs) its handles then take references of their own, and the sink
 * returns CR_CHAN_SINK_DROP so that the engine drops the message's once it
 * is consumed: a reader killed mid-decode leaves the message, references
 * and all, to be delivered again. The Manager's sink retains first and
 * adopts. */
static inline int crL__sink(void *ud, const void *data, size_t len) {
  crL_sink_t *s = ud;
  lua_State *L = s->L;
  if (len <= CRL_SMALL_MSG) {
    memcpy(s->small, data, len);
    s->small_len = len;
    s->is_small = 1;
    return 0;
  }
  lua_pushcfunction(L, crL__decode_thunk);
  lua_pushlightuserdata(L, (void *)data);
  lua_pushinteger(L, (lua_Integer)len);
  lua_pushboolean(L, s->raw);
  lua_pushinteger(L, s->own_refs ? CRL_DECODE_OWN_REFS : 0);
  s->status = lua_pcall(L, 4, 1, 0);
  return s->own_refs && !s->raw ? CR_CHAN_SINK_DROP : 0;
}

/* After a read that delivered a message: leaves its value on top of the
 * stack, or raises the decoder's error. */
static inline void crL__sink_finish(crL_sink_t *s) {
  lua_State *L = s->L;
  if (s->is_small) {
    if (s->raw) lua_pushlstring(L, s->small, s->small_len);
    else crL_decode(L, s->small, s->small_len, 0);
  } else if (s->status != LUA_OK) {
    lua_error(L);
  }
}

#endif
