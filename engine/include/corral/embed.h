/* corral: embedding the engine and its Lua module in a C host.
 *
 * A host opens the engine on its own uv_loop_t (corral_open), opens the Lua
 * module into its lua_State bound to that engine (corral_openlib), runs its
 * scripts, and keeps running its loop: pools' results, callbacks and child
 * exits are served by watchers on that loop (corral/watch.h), so nothing
 * blocks as long as the scripts use the asynchronous calls (map_async,
 * apply_async with callbacks). At the end: lua_close, then corral_close,
 * after which uv_loop_close on the host's loop returns 0.
 *
 * These functions are the bindings' (libcorral, linked with
 * `pkg-config --cflags --libs corral`); the engine itself knows nothing of
 * Lua, so lua_State is only declared here. docs/embedding.md walks through
 * examples/embed/host.c. */
#ifndef CORRAL_EMBED_H
#define CORRAL_EMBED_H

#include <stddef.h>
#include <uv.h>

#include "corral/engine.h"

/* Exported from the Lua module too (the module is built with hidden symbols). */
#define CORRAL_API __attribute__((visibility("default")))

/* ---- versions ------------------------------------------------------------------ */
#define CORRAL_VERSION_MAJOR 0
#define CORRAL_VERSION_MINOR 1
#define CORRAL_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH, for #if comparisons. */
#define CORRAL_VERSION_NUM (CORRAL_VERSION_MAJOR * 10000 + CORRAL_VERSION_MINOR * 100 + CORRAL_VERSION_PATCH)

/* The version of the library linked at run time: "MAJOR.MINOR.PATCH", and
 * as CORRAL_VERSION_NUM counts it. A host built against other headers can
 * compare them with the macros. */
CORRAL_API const char *corral_version(void);
CORRAL_API int corral_version_num(void);

/* ---- opening and closing ---------------------------------------------------------- */
typedef struct lua_State lua_State;

/* corral_options_t.flags */
#define CORRAL_NO_SIGNALS 1u /* corral installs no SIGINT or SIGCHLD handling (see below) */

typedef struct {
  uv_loop_t *loop;    /* the host's loop; NULL: the engine makes and owns one */
  size_t arena_size;  /* bytes of shared arena; 0: the default */
  const char *worker; /* the corral executable that spawn starts; NULL: $CORRAL_EXE, else
                         the one installed beside libcorral (PREFIX/bin/corral) */
  unsigned flags;     /* CORRAL_NO_SIGNALS */
} corral_options_t;

/* Opens the engine for this process (NULL opts: every default) and makes
 * it the one the Lua module uses. Signals, unless CORRAL_NO_SIGNALS:
 *   - SIGINT: only while a corral call waits, a handler turns it into the
 *     call's Interrupted error; outside waits the host's own handling stays;
 *   - SIGCHLD: watched with a uv_signal_t on the loop (and by libuv itself
 *     for spawned children), which is how child exits are noticed.
 * With CORRAL_NO_SIGNALS corral leaves SIGINT alone and does not watch
 * SIGCHLD for forked children: the host then calls corral_reap from its
 * own SIGCHLD handling (a uv_signal_t on the same loop), or no child exit
 * is noticed. Either way, a host with its own SIGCHLD handling must use a
 * uv_signal_t (libuv dispatches one signal to every such watcher), never a
 * sigaction of its own (which would take SIGCHLD from libuv and corral),
 * and must reap only its own children (waitpid on their pids, never
 * waitpid(-1)). Returns 0, or a negative code (corral/errors.h; nothing is
 * left open). */
CORRAL_API int corral_open(cr_engine_t **out, const corral_options_t *opts);

/* Opens the Lua module "corral" into L, bound to engine e (and sets
 * package.loaded.corral, as require would): pushes the module and returns
 * 1. Raises a Lua error on failure (call it under lua_pcall). */
CORRAL_API int corral_openlib(lua_State *L, cr_engine_t *e);

/* The module's opener, as `require "corral"` calls it: binds the module to
 * the engine corral_open made, else to one of its own. */
CORRAL_API int luaopen_corral(lua_State *L);

/* The corral executable that the spawn start method starts (the host's own
 * executable cannot run corral's children). NULL: back to the default. */
CORRAL_API void corral_set_worker(const char *path);

/* Errors raised by callbacks run from the loop (a pool's callback or
 * error_callback, whatever a watcher runs) never reach the host's uv_run:
 * fn(L, ud) is called with the error message and its traceback, a string,
 * on top of L's stack (fn must leave the stack as it found it). NULL fn:
 * the default, which prints "corral: error in a callback: ..." to stderr. */
typedef void (*corral_error_fn)(lua_State *L, void *ud);
CORRAL_API void corral_set_error_handler(lua_State *L, corral_error_fn fn, void *ud);

/* Notices children of e that ended (forked ones: waitpid on their pids
 * only), and serves e's watchers. For hosts that opened with
 * CORRAL_NO_SIGNALS: call it on each SIGCHLD. */
CORRAL_API void corral_reap(cr_engine_t *e);

/* ---- messages between C and Lua ----------------------------------------------------
 * A queue made in C (cr_queue_new on cr_engine_arena(e), corral/chan.h) is
 * handed to Lua with corral_pushqueue; C and Lua then exchange strings
 * through it: what C puts with corral_put_string, Lua's q:get returns as a
 * string, and a string put by Lua's q:put is what corral_get_string takes. */

/* Pushes a Queue handle for queue q onto L's stack (it takes a reference
 * of its own; the caller keeps its). Raises a Lua error when q is no
 * queue. */
CORRAL_API void corral_pushqueue(lua_State *L, cr_off_t q);

/* Puts the string s[0..len) as a message. The codes of cr_queue_put: 0,
 * CR_EFULL (no room within timeout), CR_ECLOSED, CR_EINTR, CR_ENOMEM. */
CORRAL_API int corral_put_string(cr_engine_t *e, cr_off_t q, const char *s, size_t len, double timeout);

/* Takes the oldest message. 0: *s is a malloc'd copy of the string (NUL
 * terminated, free it), *len its length. CR_EEMPTY (nothing within
 * timeout; 0 does not wait), CR_ECLOSED (closed and drained), CR_EINTR,
 * -ENOMEM (the message is lost), or CR_EINVAL when the message was not a
 * string (it is consumed, and the references it held given back). */
CORRAL_API int corral_get_string(cr_engine_t *e, cr_off_t q, char **s, size_t *len, double timeout);

/* Ends corral in this process, as a script's end does (daemon children are
 * terminated, others joined), then closes the engine: its watchers, its
 * handles on the loop (their close callbacks have run when it returns), its
 * arena. Close the lua_State first: its objects name the engine. Returns 0;
 * NULL is ignored. */
CORRAL_API int corral_close(cr_engine_t *e);

#endif
