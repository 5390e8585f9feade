/* corral bindings: small process-wide functions: time, sleep, pids, cores. */
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "corral_lua.h"

static int l_time(lua_State *L) {
  lua_pushnumber(L, cr_now());
  return 1;
}

static int l_sleep(lua_State *L) {
  double s = crL_checknumber(L, 1);
  if (!(s >= 0)) return crL_argerror(L, 1, "seconds must be >= 0, got %s", lua_tostring(L, 1));
  int rc = cr_sleep(s);
  if (rc < 0) return crL_error_code(L, rc, "sleep");
  return 0;
}

static int l_getpid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

static int l_getppid(lua_State *L) {
  lua_pushinteger(L, getppid());
  return 1;
}

static int l_cpu_count(lua_State *L) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, n > 0 ? n : 1);
  return 1;
}

/* arena_stats() -> {size=, in_use=, blocks=, objects=, held=}: the shared
 * arena's heap size and bytes in use, its allocated blocks, the shared
 * objects alive (in every process), and the references this process holds. */
static int l_arena_stats(lua_State *L) {
  cr_engine_t *e = crL_engine(L);
  cr_arena_stats_t st;
  cr_arena_stats(cr_engine_arena(e), &st);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)st.size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)st.in_use);
  lua_setfield(L, -2, "in_use");
  lua_pushinteger(L, (lua_Integer)st.blocks);
  lua_setfield(L, -2, "blocks");
  lua_pushinteger(L, (lua_Integer)st.objects);
  lua_setfield(L, -2, "objects");
  lua_pushinteger(L, (lua_Integer)cr_refs_count(e));
  lua_setfield(L, -2, "held");
  return 1;
}

/* _service(): handles what is ready in the engine's loop (child exits...)
 * without blocking. */
static int l_service(lua_State *L) {
  cr_engine_service(crL_engine(L));
  return 0;
}

/* _isatty(fd) -> boolean */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)crL_checkinteger(L, 1)));
  return 1;
}

/* _term_rows(fd) -> the rows of the terminal at fd, or nil */
static int l_term_rows(lua_State *L) {
  struct winsize ws;
  if (ioctl((int)crL_checkinteger(L, 1), TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0) return 0;
  lua_pushinteger(L, ws.ws_row);
  return 1;
}

/* _ignore_sigint(): this process ignores SIGINT from now on (pool workers:
 * Ctrl-C is the parent's to handle). */
static int l_ignore_sigint(lua_State *L) {
  (void)L;
  signal(SIGINT, SIG_IGN);
  return 0;
}

void crL_open_misc(lua_State *L) {
  static const luaL_Reg fns[] = {{"time", l_time},     {"sleep", l_sleep},         {"getpid", l_getpid},
                                 {"getppid", l_getppid}, {"cpu_count", l_cpu_count},
                                 {"arena_stats", l_arena_stats},
                                 {"_service", l_service}, {"_isatty", l_isatty},
                                 {"_ignore_sigint", l_ignore_sigint}, {"_term_rows", l_term_rows},
                                 {NULL, NULL}};
  crL_setfuncs(L, fns);
  lua_pushliteral(L, CORRAL_VERSION);
  lua_setfield(L, -2, "_VERSION");
}
