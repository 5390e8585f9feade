/* corral engine: the one way the engine waits: deadlines, futex sleeps,
 * event words and the bounded spin (see wait_int.h for the contract).
 * Linux only. */
#define _GNU_SOURCE
#include "wait_int.h"
#include "corral/engine.h"
#include "corral/errors.h"
#include "corral/trace.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- deadlines ------------------------------------------------------------ */

void cr__deadline_set(cr__deadline_t *d, double timeout) {
  d->forever = timeout < 0;
  clock_gettime(CLOCK_MONOTONIC, &d->ts);
  if (d->forever || timeout == 0) return;
  if (timeout > 1e9) timeout = 1e9; /* ~31 years: as good as forever */
  time_t whole = (time_t)timeout;
  d->ts.tv_sec += whole;
  d->ts.tv_nsec += (long)((timeout - (double)whole) * 1e9);
  if (d->ts.tv_nsec >= 1000000000L) {
    d->ts.tv_sec++;
    d->ts.tv_nsec -= 1000000000L;
  }
}

double cr__deadline_left(const cr__deadline_t *d) {
  if (d->forever) return 1e18;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double left = (double)(d->ts.tv_sec - now.tv_sec) + (double)(d->ts.tv_nsec - now.tv_nsec) / 1e9;
  return left > 0 ? left : 0;
}

int cr__deadline_expired(const cr__deadline_t *d) { return !d->forever && cr__deadline_left(d) <= 0; }

void cr__deadline_min(cr__deadline_t *out, const cr__deadline_t *d, double slice) {
  if (!d->forever && cr__deadline_left(d) <= slice) {
    *out = *d;
    return;
  }
  cr__deadline_set(out, slice);
}

/* ---- sleeping on a word ------------------------------------------------------ */

int cr__futex_wait(_Atomic uint32_t *w, uint32_t val, const cr__deadline_t *d) {
  cr_trace_flush(); /* what this process traced is written before it sleeps */
  long rc = syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_BITSET, val, d->forever ? NULL : &d->ts,
                    NULL, FUTEX_BITSET_MATCH_ANY);
  if (rc == 0 || errno == EAGAIN) return 0;
  if (errno == ETIMEDOUT) return CR_ETIMEDOUT;
  if (errno == EINTR) return cr_intr_pending() ? CR_EINTR : 0;
  return -errno;
}

void cr__futex_wake(_Atomic uint32_t *w, int n) {
  syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* ---- event words ------------------------------------------------------------- */

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

void cr__ev_notify(_Atomic uint32_t *ev) {
  atomic_thread_fence(memory_order_seq_cst);
  uint32_t v = atomic_load_explicit(ev, memory_order_relaxed);
  while (v & 1u) {
    if (atomic_compare_exchange_weak(ev, &v, (v + 2u) & ~1u)) {
      cr__futex_wake(ev, INT_MAX);
      return;
    }
  }
}

/* ---- the bounded spin ---------------------------------------------------------- */

#define PAUSE_STEPS 64    /* plain spin: a pause per step for this many, then yields */
#define MAX_PAUSES  4096  /* backoff: the pauses of one step stop doubling here */
#define SPENT       UINT_MAX /* cr__spin_t.n once the budget is used up */

/* Online CPUs, cached. */
static int ncpu(void) {
  static int n;
  if (!n) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    n = c > 0 ? (int)c : 1;
  }
  return n;
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static long ns_since(const struct timespec *t0) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (long)(now.tv_sec - t0->tv_sec) * 1000000000L + (now.tv_nsec - t0->tv_nsec);
}

int cr__spin(cr__spin_t *s) {
  if (s->n == SPENT) return 0;
  if (ncpu() < 2) return 0; /* the other side cannot run while we spin */
  if (s->n == 0) clock_gettime(CLOCK_MONOTONIC, &s->t0);
  s->n++;
  /* A plain step is a few ns: look at the clock every 16th. */
  if ((s->pauses || (s->n & 15u) == 0) && ns_since(&s->t0) >= CR__SPIN_NS) {
    s->n = SPENT;
    return 0;
  }
  if (s->pauses) {
    for (unsigned i = 0; i < s->pauses; i++) cpu_relax();
    if (s->pauses < MAX_PAUSES) s->pauses *= 2;
  } else if (s->n > PAUSE_STEPS) {
    sched_yield();
  } else {
    cpu_relax();
  }
  return 1;
}

int cr__spin_while(_Atomic uint32_t *w, uint32_t val, cr__spin_t *s) {
  while (atomic_load_explicit(w, memory_order_acquire) == val)
    if (!cr__spin(s)) return atomic_load_explicit(w, memory_order_acquire) != val;
  return 1;
}
