/* corral bindings: watches (corral/watch.h) for the Lua companions, and the
 * one policy for errors raised by callbacks run from the engine's loop.
 *
 *   w = core._watch(queue, fn)  fn() runs, from any corral wait or the
 *                               host's uv_run, when queue has messages
 *   w:pause(true|false)         the owner waits on the queue itself
 *   w:stop()                    (also __gc, __close); idempotent
 *   core._callback(fn, ...)     calls fn(...) under the same error policy
 *                               (a pipeline's on_done, from its own wait)
 *
 * fn runs in a Lua thread of its own (a coroutine never resumed), so it
 * does not matter which coroutine was waiting when the queue rang. An
 * error in fn does not travel into the wait that happened to serve it: it
 * goes, with a traceback, to the error handler (corral/embed.h:
 * corral_set_error_handler; by default printed to stderr). */
#include <stdio.h>

#include "corral_lua.h"
#include "corral/embed.h"
#include "corral/watch.h"

#define WATCH_MT "corral.Watch"

typedef struct {
  cr_watch_t *w;   /* NULL once stopped */
  lua_State *T;    /* its thread: fn at index 1 */
} lwatch_t;

static corral_error_fn error_fn;
static void *error_ud;

void corral_set_error_handler(lua_State *L, corral_error_fn fn, void *ud) {
  (void)L;
  error_fn = fn;
  error_ud = ud;
}

static int interrupted; /* the callback's error was an Interrupted */

/* Message handler: the error as a string, with a traceback. */
static int traceback(lua_State *L) {
  interrupted = crL_iserror(L, 1, "Interrupted");
  const char *msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

void crL_callback_error(lua_State *L) {
  if (error_fn) error_fn(L, error_ud);
  else fprintf(stderr, "corral: error in a callback: %s\n", lua_tostring(L, -1));
  fflush(stderr);
}

/* Calls the function below the nargs arguments on top of L's stack, and
 * pops them all; an error goes to the handler. Returns whether it
 * returned. */
static int call_callback(lua_State *L, int nargs) {
  int fn = lua_gettop(L) - nargs;
  interrupted = 0;
  lua_pushcfunction(L, traceback);
  lua_insert(L, fn);
  int ok = lua_pcall(L, nargs, 0, fn) == LUA_OK;
  if (!ok) {
    crL_callback_error(L);
    if (interrupted) cr_intr_post(); /* Ctrl-C is the waiting caller's */
    lua_pop(L, 1);
  }
  lua_pop(L, 1); /* the message handler */
  return ok;
}

static void on_ring(cr_watch_t *w, void *data) {
  (void)w;
  lwatch_t *lw = data;
  lua_State *T = lw->T;
  lua_settop(T, 1);
  lua_pushvalue(T, 1);
  call_callback(T, 0);
  lua_settop(T, 1);
}

/* _callback(fn, ...) -> whether fn returned: fn(...) run as a watch runs
 * its callback (its error, with a traceback, to the handler). */
static int l_callback(lua_State *L) {
  crL_checkcallable(L, 1);
  lua_pushboolean(L, call_callback(L, lua_gettop(L) - 1));
  return 1;
}

static int l_watch(lua_State *L) {
  crL_handle_t *h = crL_checkhandle(L, 1, CR_OBJ_QUEUE);
  crL_checkcallable(L, 2);
  cr_engine_t *e = crL_engine(L);
  lwatch_t *lw = lua_newuserdatauv(L, sizeof *lw, 2);
  lw->w = NULL;
  lw->T = lua_newthread(L);
  lua_pushvalue(L, 2);
  lua_xmove(L, lw->T, 1);
  lua_setiuservalue(L, -2, 1); /* the thread */
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 2); /* the queue handle, for as long as we watch */
  luaL_setmetatable(L, WATCH_MT);
  int rc = cr_queue_watch(e, h->off, on_ring, lw, &lw->w);
  if (rc < 0) return crL_error_code(L, rc, "watch");
  return 1;
}

static lwatch_t *check_watch(lua_State *L) { return crL_checkudata(L, 1, WATCH_MT); }

static int l_watch_stop(lua_State *L) {
  lwatch_t *lw = check_watch(L);
  cr_watch_t *w = lw->w;
  lw->w = NULL;
  cr_watch_stop(w);
  return 0;
}

static int l_watch_pause(lua_State *L) {
  lwatch_t *lw = check_watch(L);
  cr_watch_pause(lw->w, lua_toboolean(L, 2));
  return 0;
}

void crL_open_watch(lua_State *L) {
  static const luaL_Reg methods[] = {{"stop", l_watch_stop}, {"pause", l_watch_pause}, {NULL, NULL}};
  luaL_newmetatable(L, WATCH_MT);
  lua_pushcfunction(L, l_watch_stop);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_watch_stop);
  lua_setfield(L, -2, "__close");
  lua_newtable(L);
  crL_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_watch);
  lua_setfield(L, -2, "_watch");
  lua_pushcfunction(L, l_callback);
  lua_setfield(L, -2, "_callback");
}
