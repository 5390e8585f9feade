/* corral engine: watches, the way work that arrives in a queue is served
 * from the engine's loop.
 *
 * A watch names a queue and a callback. The callback runs in the process
 * that made the watch, on its engine's thread (never on another thread),
 * soon after the queue has a message or is closed, wherever that process
 * happens to be waiting:
 *   - in any engine wait that runs the loop (cr_engine_wait: joins) or a
 *     host's own uv_run on the engine's loop: through a uv_async_t;
 *   - in any blocking wait bracketed by cr_intr_begin/end (a queue get or
 *     put, a lock, a semaphore, an event, a condition, a barrier, a join of
 *     a JoinableQueue) and in cr_sleep: those sleep on the process's
 *     doorbell as well as on their own word, and serve the watches when it
 *     rings, then go on waiting.
 * The callback is also run when a child of the engine ends (so that whoever
 * serves a queue of answers learns of a dead worker), and whenever
 * cr_engine_serve is called. It is expected to take what it needs from the
 * queue (without waiting); a watch rings again only for what arrives, or is
 * still there, after its callback returned. Callbacks never nest: while one
 * runs, the waits it makes do not serve.
 *
 * Each watch has a helper thread that sleeps on the queue's event word, as a
 * getter does, and rings; it takes nothing from the queue and blocks every
 * signal. A forked child has no such threads: the watches it inherited are
 * foreign to it, never ring there, and cr_watch_stop only frees them.
 * Linux only. */
#ifndef CORRAL_WATCH_H
#define CORRAL_WATCH_H

#include "corral/engine.h"

typedef struct cr_watch_s cr_watch_t;
typedef void (*cr_watch_cb)(cr_watch_t *w, void *data);

/* Starts watching queue q for engine e (this process's engine). The watch
 * holds a reference on the queue, recorded in this process's ledger, until
 * it stops. Returns 0; CR_EINVAL when q is no queue; CR_ENOMEM; or -errno
 * when the thread could not start (nothing is left behind). */
int cr_queue_watch(cr_engine_t *e, cr_off_t q, cr_watch_cb cb, void *data, cr_watch_t **out);

/* Stops the watch (joins its thread), drops its reference on the queue and
 * frees it; the callback never runs again. NULL is ignored. Must not be
 * called from the watch's own callback; use cr_watch_pause there. */
void cr_watch_stop(cr_watch_t *w);

/* paused 1: the watch does not ring (its owner is waiting on the queue
 * itself); 0: it rings again, at once if the queue has messages. Cheap
 * when nothing changes. */
void cr_watch_pause(cr_watch_t *w, int paused);

/* Serves the engine now: reaps forked children that ended, then runs the
 * callback of every watch that rang. Does nothing inside a callback, once
 * cr_engine_finish has begun, in a process that is not e's, or for NULL. */
void cr_engine_serve(cr_engine_t *e);

#endif
