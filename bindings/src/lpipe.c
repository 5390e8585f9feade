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
#include <string.h>
#include <unistd.h>

#include "sink.h"

#define CONN_MT "corral.Connection"

static cr_arena_t *arena(lua_State *L) { return cr_engine_arena(crL_engine(L)); }

static const char *conn_tname(cr_arena_t *a, cr_off_t off) {
  (void)a;
  (void)off;
  return CONN_MT;
}

static const crL_handle_class_t conn_class = {sizeof(crL_handle_t), 0, conn_tname, NULL};

static crL_handle_t *check_conn(lua_State *L) { return crL_checkhandle(L, 1, CR_OBJ_PIPE); }

/* Pipe([duplex]) -> a, b */
static int l_pipe(lua_State *L) {
  int duplex = lua_isnoneornil(L, 1) ? 1 : lua_toboolean(L, 1);
  cr_off_t ends[2];
  int rc = cr_pipe_new(arena(L), duplex, ends);
  if (rc < 0) return crL_error_code(L, rc, "Pipe");
  crL_handle_new(L, CR_OBJ_PIPE, ends[0]);
  crL_handle_new(L, CR_OBJ_PIPE, ends[1]);
  return 2;
}

static int send_raw(lua_State *L, crL_handle_t *u, const char *p, size_t len, int encoded) {
  int rc = cr_pipe_send(arena(L), u->off, p, len);
  if (rc < 0 && encoded) crL_decode_drop(L, p, len); /* the message's references on handles */
  if (rc == CR_ECLOSED) return crL_error(L, "Closed", "send: every handle of the other end is closed");
  if (rc == CR_ESTATE) return crL_error(L, "StateError", "send: this connection is read-only");
  if (rc < 0) return crL_error_code(L, rc, "send");
  return 0;
}

static int c_send(lua_State *L) {
  crL_handle_t *u = check_conn(L);
  crL_checkany(L, 2);
  size_t len;
  const char *p = crL_encode(L, 2, "value", &len);
  return send_raw(L, u, p, len, 1);
}

static int c_send_bytes(lua_State *L) {
  crL_handle_t *u = check_conn(L);
  size_t len;
  const char *p = crL_checklstring(L, 2, &len);
  return send_raw(L, u, p, len, 0);
}

static int recv_any(lua_State *L, int raw) {
  crL_handle_t *u = check_conn(L);
  double t = crL_opttimeout(L, 2);
  crL_sink_t s;
  s.L = L;
  s.raw = raw;
  s.status = LUA_OK;
  s.own_refs = 1;
  s.is_small = 0;
  int rc = cr_pipe_recv(arena(L), u->off, crL__sink, &s, t);
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
  crL_handle_t *u = check_conn(L);
  double t = lua_isnone(L, 2) ? 0 : crL_opttimeout(L, 2); /* as Python: poll() does not wait */
  int rc = cr_pipe_poll(arena(L), u->off, t);
  if (rc == CR_ESTATE) return crL_error(L, "StateError", "poll: this connection is write-only");
  if (rc < 0 && rc != CR_EEMPTY) return crL_error_code(L, rc, "poll");
  lua_pushboolean(L, rc == 0);
  return 1;
}

static int c_readable(lua_State *L) {
  lua_pushboolean(L, cr_pipe_readable(arena(L), check_conn(L)->off));
  return 1;
}

static int c_writable(lua_State *L) {
  lua_pushboolean(L, cr_pipe_writable(arena(L), check_conn(L)->off));
  return 1;
}

void crL_open_pipe(lua_State *L) {
  crL_handle_class(CR_OBJ_PIPE, &conn_class);
  static const luaL_Reg methods[] = {{"send", c_send},           {"recv", c_recv},       {"poll", c_poll},
                                     {"send_bytes", c_send_bytes}, {"recv_bytes", c_recv_bytes},
                                     {"close", crL_handle_close},   {"readable", c_readable},
                                     {"writable", c_writable},   {NULL, NULL}};
  crL_handle_metatable(L, CR_OBJ_PIPE, CONN_MT, NULL, methods);
  lua_pushcfunction(L, l_pipe);
  lua_setfield(L, -2, "Pipe");
}
