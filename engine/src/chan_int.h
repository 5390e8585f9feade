/* corral engine: internals shared by queue.c and pipe.c (implemented in
 * chan_util.c): the event word that sleepers flag, the bounded spin, and
 * this process's pid. Deadlines, futexes and process identities are the
 * engine's common ones (sync_int.h). */
#ifndef CORRAL_CHAN_INT_H
#define CORRAL_CHAN_INT_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "corral/chan.h"
#include "sync_int.h"

/* ---- event words ----------------------------------------------------------
 * A 32-bit word: a counter in the upper 31 bits, bit 0 = "someone sleeps".
 * A waiter calls cr__ev_prepare (sets the bit, full fence), re-checks its
 * condition, then cr__ev_wait with the value prepare returned. A notifier
 * makes its condition true, then calls cr__ev_notify: a fence and a load,
 * and only when the bit is set a bump and a futex wake of every sleeper. */
uint32_t cr__ev_prepare(_Atomic uint32_t *ev);
/* 0 (woken, or the word moved on), CR_ETIMEDOUT at the deadline, CR_EINTR
 * when SIGINT arrived inside a cr_intr_begin/end bracket. */
int cr__ev_wait(_Atomic uint32_t *ev, uint32_t val, const cr__deadline_t *d);
void cr__ev_notify(_Atomic uint32_t *ev);

/* One step of the bounded spin before sleeping. `spin` starts at 0; returns
 * 0 once the budget (CR__CHAN_SPIN_NS) is used up, else 1 after a pause
 * (or a sched_yield once past the first few steps, so that on a busy
 * machine the process we wait for can run). */
#define CR__CHAN_SPIN_NS 50000
typedef struct {
  unsigned n;
  struct timespec t0;
} cr__chan_spin_t;
int cr__chan_spin(cr__chan_spin_t *s);

/* This process's pid, cached (refreshed in a forked child). */
#define cr__chan_self() CR__ID_PID(cr__self_id())
/* 1 while pid runs (or belongs to us), 0 when it is gone or a zombie. */
int cr__chan_pid_alive(int pid);

/* queue.c, for pipe.c: get with an end-of-stream test. `gone(ud, full)` is
 * asked when the queue is empty: full = 0 for the cheap test (every empty
 * attempt), 1 for the thorough one (before sleeping and after each slice).
 * `peek`: wait until a message is there but take nothing. */
typedef int (*cr__chan_gone_fn)(void *ud, int full);
int cr__queue_get_ex(cr_arena_t *a, cr_off_t q, cr_chan_sink_fn sink, void *ud, double timeout,
                     cr__chan_gone_fn gone, void *gone_ud, int peek, double slice);
/* Wakes every getter (end of stream changed). */
void cr__queue_wake_getters(cr_arena_t *a, cr_off_t q);

#endif
