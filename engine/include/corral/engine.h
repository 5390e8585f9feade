/* corral engine: the engine instance.
 *
 * One engine per process: the shared arena, the libuv loop that watches
 * children, and the table of this process's children. A host opens it on its
 * own uv_loop_t or lets it own one. A forked child gets a fresh loop and an
 * empty child table (cr_engine_t stays the same pointer); a spawned child
 * attaches to the arena fd it inherited. */
#ifndef CORRAL_ENGINE_H
#define CORRAL_ENGINE_H

#include <uv.h>

#include "corral/arena.h"

typedef struct cr_engine_s cr_engine_t;

/* Opens an engine with a new arena of `arena_size` bytes (0 = default).
 * `loop` may be the host's loop, or NULL for one owned by the engine. */
int cr_engine_open(cr_engine_t **out, uv_loop_t *loop, size_t arena_size);

/* Opens an engine over an inherited arena fd (a spawned child). */
int cr_engine_attach(cr_engine_t **out, uv_loop_t *loop, int arena_fd);

/* Closes the engine in this process: stops watching, frees the table, unmaps
 * the arena. Children still running are left alone: call cr_engine_finish
 * first for the at-exit policy. */
void cr_engine_close(cr_engine_t *e);

/* The engine this process opened last (the one the bindings use), or NULL. */
cr_engine_t *cr_engine_default(void);
void cr_engine_set_default(cr_engine_t *e);

uv_loop_t *cr_engine_loop(cr_engine_t *e);
cr_arena_t *cr_engine_arena(cr_engine_t *e);
/* pid of the process this engine instance belongs to (changes after fork). */
int cr_engine_pid(const cr_engine_t *e);

/* Runs the loop until `done(arg)` is true, `timeout` seconds pass (< 0: no
 * limit), or SIGINT arrives. Returns 0 (done), CR_ETIMEDOUT or CR_EINTR. The
 * loop also serves every other watcher while it waits (feeding pools...). */
int cr_engine_wait(cr_engine_t *e, double timeout, int (*done)(void *), void *arg);

/* At-exit policy, as in Python: terminate daemon children, then join every
 * other child (forever). Runs at most once per process; cr_engine_open
 * registers it with atexit(). */
void cr_engine_finish(cr_engine_t *e);

/* Monotonic clock in seconds. */
double cr_now(void);
/* Sleeps `seconds`; returns 0 or CR_EINTR when SIGINT interrupted it. */
int cr_sleep(double seconds);

/* ---- signals during blocking waits ---------------------------------------
 * A blocking wait brackets itself with cr_intr_begin/end. In between:
 * - SIGINT sets a flag (and wakes the engine's loop) instead of its usual
 *   action, and the wait gives up with CR_EINTR: the signal is the wait's,
 *   the handler that was there before is not called (the caller reports
 *   CR_EINTR; a host's own reaction on top would fire a second time). A
 *   SIGINT that the wait did not act on (it arrived as the wait ended for
 *   another reason) is raised again by the outermost cr_intr_end, once the
 *   previous handler is back. Outside waits SIGINT is untouched.
 * - SIGCHLD interrupts the wait too (its usual handler still runs), so a
 *   waiter can notice a child's death while it waits.
 * Waits that block in the kernel (futex) get EINTR then: they return
 * CR_EINTR if cr_intr_pending(), else check their condition (a dead peer's
 * slot, say) and wait again; the caller's next engine wait reaps the child.
 * Nestable; the outermost begin clears the flag, and the code that reports
 * CR_EINTR clears it too (the bindings do, when they raise). A wait that
 * sees cr_intr_pending() true must return CR_EINTR (that is how
 * cr_intr_end knows the signal was acted on), or else call cr_intr_pass:
 * a wait that completes anyway (a notify or a barrier's last party won
 * the race) passes the signal on to the previous handler, at the
 * outermost cr_intr_end, or at once when called after it. */
void cr_intr_begin(void);
void cr_intr_end(void);
int cr_intr_pending(void);
void cr_intr_clear(void);
void cr_intr_pass(void);
/* A SIGINT that a nested wait took (a callback run from a wait, which
 * raised Interrupted) goes back to whom it belongs: inside a wait, the
 * flag is set again (that wait returns CR_EINTR); outside any, SIGINT is
 * raised for the process's own handler. */
void cr_intr_post(void);

/* on 0: the engine installs no signal handling of its own from now on: no
 * SIGINT handler during waits (waits are then not interrupted by Ctrl-C),
 * no SIGCHLD watcher for forked children (the host calls cr_engine_serve
 * on SIGCHLD). Spawned children are libuv's, which watches SIGCHLD itself.
 * on 1: the default. */
void cr_engine_handle_signals(int on);

/* Handles events that are ready (child exits, ...) without blocking. */
void cr_engine_service(cr_engine_t *e);

#endif
