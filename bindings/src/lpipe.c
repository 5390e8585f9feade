/* corral bindings: Pipe and its Connection ends.
 *
 *   local a, b = mp.Pipe([duplex])   duplex defaults to true; with false,
 *                                    a only receives and b only sends
 *   c:send(v)         never blocks; raises EncodeError (nothing sent), or
 *                     Closed when every handle of the far end is closed
 *   c:recv([t])       -> v | nil, "timeout" | nil, "closed" (end of stream:
 *                        drained, and the far end closed or its processes gone)
 *   c:poll([t])       -> true when recv would not block (a message, or end
 *                        of stream), false after t seconds; no argument: 0
 *                        (as Python's poll()), an explicit nil: forever
 *   c:send_bytes(s)   sends the string's bytes as they are (no codec)
 *   c:recv_bytes([t]) -> string | nil, "timeout" | nil, "closed"
 *   c:close()         closes this handle (also __close and __gc); using it
 *                     afterwards raises "attempt to use a closed Connection"
 *
 * Every process that holds a Connection is registered as a holder of that
 * end: at creation, when a handle arrives in a message or a spawned child's
 * arguments, and for each inherited handle in a forked child (as an fd is
 * inherited). The far end reads end of stream once every holder closed its
 * handles or ended: as with OS pipes, a process that keeps an unused end
 * open keeps the stream open. */
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "lchan.h"
#include "sink.h"

#define CONN_MT "corral.Connection"

static crL_chanud_t *live; /* this process's open Connection handles */

static cr_arena_t *arena(lua_State *L) { return cr_engine_arena(crL_engine(L)); }

static crL_chanud_t *check_conn(lua_State *L) {
  crL_chanud_t *u = luaL_checkudata(L, 1, CONN_MT);
  if (u->h.off == 0) crL_error_closed(L, "Connection");
  return u;
}

/* Pushes a handle for the end at off, taking over a reference, and
 * registers this process as one more holder of that end. */
static void push_conn(lua_State *L, cr_off_t off) {
  crL_chanud_t *u = lua_newuserdatauv(L, sizeof *u, 0);
  memset(u, 0, sizeof *u);
  u->h.off = off;
  u->h.kind = CR_OBJ_PIPE;
  u->h.owner_pid = getpid();
  luaL_setmetatable(L, CONN_MT);
  cr_pipe_hold(arena(L), off, u->h.owner_pid);
  crL__link(&live, u);
}

static int c_close(lua_State *L) {
  crL_chanud_t *u = luaL_checkudata(L, 1, CONN_MT);
  if (u->h.off) {
    cr_engine_t *e = cr_engine_default();
    if (e && u->h.owner_pid == getpid()) {
      cr_pipe_unhold(cr_engine_arena(e), u->h.off, u->h.owner_pid);
      cr_pipe_release(cr_engine_arena(e), u->h.off);
    }
    u->h.off = 0;
    crL__unlink(&live, u);
  }
  return 0;
}

/* A forked child holds the ends it inherits, like inherited fds. The
 * parent registers them for the child (a reference and a hold under the
 * child's pid) right after the fork, before it can close its own; the
 * child waits to see them before it runs any Lua code, so that a close in
 * the child never comes before the hold it undoes. */
static void fork_parent(int pid, void *arg) {
  (void)arg;
  cr_engine_t *e = cr_engine_default();
  if (!e) return;
  int me = getpid();
  for (crL_chanud_t *u = live; u; u = u->next)
    if (u->h.off && u->h.owner_pid == me) {
      cr_obj_retain(cr_engine_arena(e), u->h.off);
      cr_pipe_hold(cr_engine_arena(e), u->h.off, pid);
    }
}

static void fork_child(void *arg) {
  (void)arg;
  cr_engine_t *e = cr_engine_default();
  if (!e) return;
  int me = getpid(), parent = getppid();
  double give_up = cr_now() + 10; /* only if the parent died meanwhile */
  for (crL_chanud_t *u = live; u; u = u->next)
    if (u->h.off && u->h.owner_pid != me) {
      while (cr_pipe_held_by(cr_engine_arena(e), u->h.off, me) <= 0 && cr_now() < give_up &&
             getppid() == parent)
        sched_yield();
      u->h.owner_pid = me;
    }
}

/* Pipe([duplex]) -> a, b */
static int l_pipe(lua_State *L) {
  int duplex = lua_isnoneornil(L, 1) ? 1 : lua_toboolean(L, 1);
  cr_off_t ends[2];
  int rc = cr_pipe_new(arena(L), duplex, ends);
  if (rc < 0) return crL_error_code(L, rc, "Pipe");
  push_conn(L, ends[0]);
  push_conn(L, ends[1]);
  return 2;
}

static int send_raw(lua_State *L, crL_chanud_t *u, const char *p, size_t len, int encoded) {
  int rc = cr_pipe_send(arena(L), u->h.off, p, len);
  if (rc < 0 && encoded) crL_decode_drop(L, p, len); /* the message's references on handles */
  if (rc == CR_ECLOSED) return crL_error(L, "Closed", "send: every handle of the other end is closed");
  if (rc == CR_ESTATE) return crL_error(L, "StateError", "send: this connection is read-only");
  if (rc < 0) return crL_error_code(L, rc, "send");
  return 0;
}

static int c_send(lua_State *L) {
  crL_chanud_t *u = check_conn(L);
  luaL_checkany(L, 2);
  size_t len;
  const char *p = crL_encode(L, 2, "value", &len);
  return send_raw(L, u, p, len, 1);
}

static int c_send_bytes(lua_State *L) {
  crL_chanud_t *u = check_conn(L);
  size_t len;
  const char *p = luaL_checklstring(L, 2, &len);
  return send_raw(L, u, p, len, 0);
}

static int recv_any(lua_State *L, int raw) {
  crL_chanud_t *u = check_conn(L);
  double t = crL_opttimeout(L, 2);
  crL_sink_t s;
  s.L = L;
  s.raw = raw;
  s.status = LUA_OK;
  s.is_small = 0;
  int rc = cr_pipe_recv(arena(L), u->h.off, crL__sink, &s, t);
  if (rc == 0) {
    crL__sink_finish(&s);
    return 1;
  }
  if (rc == CR_EEMPTY || rc == CR_ECLOSED) {
    lua_pushnil(L);
    lua_pushstring(L, rc == CR_EEMPTY ? "timeout" : "closed");
    return 2;
  }
  if (rc == CR_ESTATE) return crL_error(L, "StateError", "recv: this connection is write-only");
  return crL_error_code(L, rc, "recv");
}

static int c_recv(lua_State *L) { return recv_any(L, 0); }
static int c_recv_bytes(lua_State *L) { return recv_any(L, 1); }

static int c_poll(lua_State *L) {
  crL_chanud_t *u = check_conn(L);
  double t = lua_isnone(L, 2) ? 0 : crL_opttimeout(L, 2); /* as Python: poll() does not wait */
  int rc = cr_pipe_poll(arena(L), u->h.off, t);
  if (rc == CR_ESTATE) return crL_error(L, "StateError", "poll: this connection is write-only");
  if (rc < 0 && rc != CR_EEMPTY) return crL_error_code(L, rc, "poll");
  lua_pushboolean(L, rc == 0);
  return 1;
}

static int c_readable(lua_State *L) {
  lua_pushboolean(L, cr_pipe_readable(arena(L), check_conn(L)->h.off));
  return 1;
}

static int c_writable(lua_State *L) {
  lua_pushboolean(L, cr_pipe_writable(arena(L), check_conn(L)->h.off));
  return 1;
}

static int c_tostring(lua_State *L) {
  crL_chanud_t *u = luaL_checkudata(L, 1, CONN_MT);
  if (u->h.off) lua_pushfstring(L, "Connection (%p)", (void *)(uintptr_t)u->h.off);
  else lua_pushliteral(L, "Connection (closed)");
  return 1;
}

void crL_open_pipe(lua_State *L) {
  static int hooked;
  if (!hooked) {
    hooked = 1;
    cr_proc_on_fork(fork_parent, fork_child, NULL);
  }
  crL_handle_type(L, CR_OBJ_PIPE, CONN_MT, push_conn);
  luaL_getmetatable(L, CONN_MT);
  static const luaL_Reg meta[] = {{"__gc", c_close}, {"__close", c_close}, {"__tostring", c_tostring}, {NULL, NULL}};
  luaL_setfuncs(L, meta, 0);
  static const luaL_Reg methods[] = {{"send", c_send},           {"recv", c_recv},       {"poll", c_poll},
                                     {"send_bytes", c_send_bytes}, {"recv_bytes", c_recv_bytes},
                                     {"close", c_close},         {"readable", c_readable},
                                     {"writable", c_writable},   {NULL, NULL}};
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_pipe);
  lua_setfield(L, -2, "Pipe");
}
