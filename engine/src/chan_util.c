/* corral engine: futex waits, event words, spinning and pids for the
 * channels (see chan_int.h). Linux only. */
#define _GNU_SOURCE
#include "chan_int.h"
#include "corral/engine.h"
#include "corral/errors.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- futex and event words -------------------------------------------------- */

uint32_t cr__ev_prepare(_Atomic uint32_t *ev) {
  uint32_t v = atomic_load(ev);
  while (!(v & 1u))
    if (atomic_compare_exchange_weak(ev, &v, v | 1u)) {
      v |= 1u;
      break;
    }
  /* Pairs with the fence in cr__ev_notify: either the notifier sees our
   * bit, or our re-check sees its change. */
  atomic_thread_fence(memory_order_seq_cst);
  return v;
}

int cr__ev_wait(_Atomic uint32_t *ev, uint32_t val, const cr__deadline_t *d) {
  long r = syscall(SYS_futex, (uint32_t *)ev, FUTEX_WAIT_BITSET, val, d->forever ? NULL : &d->ts,
                   NULL, FUTEX_BITSET_MATCH_ANY);
  if (r == 0) return 0;
  if (errno == ETIMEDOUT) return CR_ETIMEDOUT;
  if (errno == EINTR) return cr_intr_pending() ? CR_EINTR : 0;
  return 0; /* EAGAIN: the word moved on */
}

void cr__ev_notify(_Atomic uint32_t *ev) {
  atomic_thread_fence(memory_order_seq_cst);
  uint32_t v = atomic_load_explicit(ev, memory_order_relaxed);
  while (v & 1u) {
    if (atomic_compare_exchange_weak(ev, &v, (v + 2u) & ~1u)) {
      syscall(SYS_futex, (uint32_t *)ev, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
      return;
    }
  }
}

/* ---- spinning ---------------------------------------------------------------- */

int cr__chan_spin(cr__chan_spin_t *s) {
  if (cr__ncpu() < 2) return 0; /* the other side cannot run while we spin */
  if (s->n == 0) clock_gettime(CLOCK_MONOTONIC, &s->t0);
  s->n++;
  if ((s->n & 15u) == 0) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ns = (long)(now.tv_sec - s->t0.tv_sec) * 1000000000L + (now.tv_nsec - s->t0.tv_nsec);
    if (ns > CR__CHAN_SPIN_NS) return 0;
  }
  if (s->n > 64) sched_yield();
  else cr__cpu_relax();
  return 1;
}

/* ---- pids ---------------------------------------------------------------------- */

int cr__chan_pid_alive(int pid) {
  if (pid == cr__chan_self()) return 1;
  return cr__pid_alive(pid);
}
