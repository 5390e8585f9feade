/* corral engine: how every blocking wait of the engine waits (wait.c).
 * Queue, Pipe, Lock, RLock, Semaphore, Event, Condition, Barrier and the
 * managed objects all wait the same way:
 *
 *   1. spin for a bounded time (cr__spin / cr__spin_while): a wake-up
 *      costs a sleeping process about 30 us, so a condition that comes true
 *      sooner than that is caught without a system call;
 *   2. then sleep on a 32-bit word in shared memory (cr__futex_wait) until
 *      it changes, a deadline on CLOCK_MONOTONIC, or SIGINT, with the whole
 *      wait bracketed by cr_intr_begin/end (corral/engine.h);
 *   3. on waking, re-check the condition: a return of 0 promises nothing.
 *
 * Every function returns the engine's codes (corral/errors.h). Linux only. */
#ifndef CORRAL_WAIT_INT_H
#define CORRAL_WAIT_INT_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* ---- deadlines ------------------------------------------------------------ */
typedef struct {
  int forever;          /* no deadline */
  struct timespec ts;   /* absolute, CLOCK_MONOTONIC */
} cr__deadline_t;

/* timeout < 0: forever; 0: already expired; else now + timeout. */
void cr__deadline_set(cr__deadline_t *d, double timeout);
/* Seconds from now to the deadline (never negative; huge when forever). */
double cr__deadline_left(const cr__deadline_t *d);
int cr__deadline_expired(const cr__deadline_t *d);
/* The earlier of `d` and now + `slice` seconds. */
void cr__deadline_min(cr__deadline_t *out, const cr__deadline_t *d, double slice);

/* ---- sleeping on a word ----------------------------------------------------
 * Shared (not private) futexes: the words live in the arena, mapped by many
 * processes. The wait is FUTEX_WAIT_BITSET, whose timeout is an absolute
 * CLOCK_MONOTONIC time, so a deadline never stretches when the wait is
 * interrupted and resumed. */

/* Sleeps while *w == val. Returns
 *   0             woken, or *w != val already, or a signal other than
 *                 SIGINT interrupted the sleep: the caller re-checks its
 *                 condition and calls again if it still has to wait;
 *   CR_ETIMEDOUT  the deadline passed (or had passed already);
 *   CR_EINTR      SIGINT arrived inside a cr_intr_begin/end bracket
 *                 (cr_intr_pending()); a wait that must not be interrupted
 *                 treats it as 0;
 *   -errno        the kernel refused the wait (a bad address: a bug).
 * A waiter that was woken always gets 0, never CR_ETIMEDOUT or CR_EINTR:
 * the kernel settles that race, which is what lets a waker count on its
 * wake being consumed. */
int cr__futex_wait(_Atomic uint32_t *w, uint32_t val, const cr__deadline_t *d);
/* The same sleep without the doorbell (below): for a watch's own thread,
 * and for whatever must not serve. */
int cr__futex_sleep(_Atomic uint32_t *w, uint32_t val, const cr__deadline_t *d);

/* ---- the doorbell ------------------------------------------------------------
 * A process with watches (corral/watch.h) serves them from its waits: when
 * the engine says a wait may serve (cr__engine_may_serve: a watch exists,
 * this is the engine's process and thread, inside a cr_intr_begin/end
 * bracket, not already serving), cr__futex_wait serves what already rang,
 * then sleeps on its word and on the process's doorbell at once, and
 * serves again when the bell rang (returning 0: the caller re-checks its
 * condition and waits again). cr__bell_ring moves the bell and wakes its
 * sleepers, from any thread. cr__bell_sleep sleeps on the bell alone until
 * the deadline (cr_sleep), serving as cr__futex_wait does: 0 (woken, or
 * served), CR_ETIMEDOUT, CR_EINTR. */
void cr__bell_ring(void);
int cr__bell_sleep(const cr__deadline_t *d);
/* engine.c: whether this wait may serve. watch.c: serves what rang, after
 * running the engine's own loop if it has events waiting (1 when anything
 * ran). */
int cr__engine_may_serve(void);
int cr__engine_serve_waiting(void);
/* Wakes up to n sleepers on w (INT32_MAX: all). */
void cr__futex_wake(_Atomic uint32_t *w, int n);

/* ---- event words ------------------------------------------------------------
 * For conditions that are not a single word (a queue's ring, its unfinished
 * count): a word that counts notifications in its upper 31 bits, bit 0 =
 * "someone sleeps". A waiter calls cr__ev_prepare (sets the bit, full
 * fence), re-checks its condition, then cr__futex_wait(ev, v) with the
 * value v that prepare returned. A notifier makes its condition true, then
 * calls cr__ev_notify: a fence and a load, and only when the bit is set a
 * bump and a wake of every sleeper, so no system call while nobody sleeps. */
uint32_t cr__ev_prepare(_Atomic uint32_t *ev);
void cr__ev_notify(_Atomic uint32_t *ev);

/* ---- the bounded spin --------------------------------------------------------
 * One budget for every spin of the engine: CR__SPIN_NS from the first step,
 * chosen from the cost of waking a sleeping process (~30 us here): long
 * enough to cover a short critical section or a quick reply, short enough
 * to be negligible next to a real sleep. */
#define CR__SPIN_NS 50000

/* A spin in progress. Zero-initialise it ({0}) for the plain spin: a pause
 * per step, and a sched_yield per step once past the first few, so that on
 * a busy machine the process we wait for can run. CR__SPIN_BACKOFF starts a
 * spin that doubles its pauses at each step instead (32 up to 4096): for a
 * lock, where looking less often leaves the cache line with the holder,
 * which then gets through several critical sections in a row. */
typedef struct {
  unsigned n;           /* steps taken */
  unsigned pauses;      /* 0: plain; else the next step's pauses (backoff) */
  struct timespec t0;   /* time of the first step */
} cr__spin_t;
#define CR__SPIN_BACKOFF {0, 32, {0, 0}}

/* One step: waits a little and returns 1, or returns 0 (without waiting)
 * once the budget is used up, and from then on; also 0 at once on a
 * single-CPU machine, where the other side cannot run while we spin. The
 * caller checks its condition between steps. */
int cr__spin(cr__spin_t *s);
/* Spins while *w == val: 1 as soon as the word differs, 0 when the budget
 * ran out with the word unchanged. `s` may carry on a spin already begun. */
int cr__spin_while(_Atomic uint32_t *w, uint32_t val, cr__spin_t *s);

#endif
