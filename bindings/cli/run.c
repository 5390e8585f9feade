/* corral executable: running Lua code under protection.
 *
 * Every piece of user code runs through cli_docall: a message handler adds
 * the traceback while the failing stack still exists, and SIGINT is turned
 * into a hook so that Ctrl-C stops Lua code at its next instruction instead
 * of killing the process (children, history and the terminal are then left
 * in order). The hook raises the same Interrupted error object as corral's
 * own blocking waits do (they take SIGINT while they wait: this handler is
 * not called then), so a script catches Ctrl-C the same way wherever it
 * lands; one that nobody catches is reported in one line, without a
 * traceback, as lua reports an error object. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "cli.h"
#include "corral_lua.h"

const char *cli_progname = "corral";
int cli_interrupted;

/* The state the SIGINT hook is set on (one state per process). */
static lua_State *running_L;
/* Set by the handler, cleared when the hook fires: a second SIGINT while the
 * first is still pending means Lua is not getting control back (a long C
 * call), so the second one gets the default action. */
static volatile sig_atomic_t hook_armed;

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  hook_armed = 0;
  crL_pusherror(L, "Interrupted", "interrupted by a signal");
  crL_where_from(L, 0); /* the instruction it stopped, or the user's line below corral's */
  lua_setfield(L, -2, "where");
  lua_error(L);
}

/* A plain handler that only sets the hook. */
static void on_sigint(int sig) {
  if (hook_armed) {
    signal(sig, SIG_DFL);
    raise(sig); /* delivered when this handler returns */
    return;
  }
  hook_armed = 1;
  lua_sethook(running_L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* Message handler: any error value becomes a string, then gets a traceback;
 * an Interrupted error only its one line (Ctrl-C is no bug to trace), an
 * error from another process (a RemoteError: it carries its traceback)
 * only its own text, which shows where it was raised there: the parent's
 * side, corral's wait, would hide it. */
static int msghandler(lua_State *L) {
  int interrupted = crL_iserror(L, 1, "Interrupted");
  if (interrupted || (crL_iserror(L, 1, NULL) && lua_getfield(L, 1, "traceback") == LUA_TSTRING)) {
    cli_interrupted = interrupted;
    luaL_tolstring(L, 1, NULL);
    return 1;
  }
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int cli_docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg; /* the function's index */
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  running_L = L;
  hook_armed = 0;
  cli_interrupted = 0;
  sigaction(SIGINT, &sa, &old);
  int status = lua_pcall(L, narg, nres, base);
  sigaction(SIGINT, &old, NULL);
  /* A SIGINT that came after the last instruction must not fire later, in
   * the next statement typed at the REPL. */
  if (hook_armed && lua_gethook(L) == stop_hook) lua_sethook(L, NULL, 0, 0);
  hook_armed = 0;
  lua_remove(L, base);
  return status;
}

void cli_message(const char *msg) {
  fflush(stdout); /* what the code printed comes before its error */
  if (cli_progname) fprintf(stderr, "%s: ", cli_progname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

int cli_report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL) { /* not from cli_docall: an error object as is */
      if (luaL_callmeta(L, -1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
        lua_replace(L, -2);
        msg = lua_tostring(L, -1);
      } else {
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, -1));
        lua_replace(L, -2);
      }
    }
    cli_message(msg);
    lua_pop(L, 1);
  }
  return status;
}
