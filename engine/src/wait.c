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
#include <string.h>
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

int cr__futex_sleep(_Atomic uint32_t *w, uint32_t val, const cr__deadline_t *d) {
  long rc = syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_BITSET, val, d->forever ? NULL : &d->ts,
                    NULL, FUTEX_BITSET_MATCH_ANY);
  if (rc == 0 || errno == EAGAIN) return 0;
  if (errno == ETIMEDOUT) return CR_ETIMEDOUT;
  if (errno == EINTR) return cr_intr_pending() ? CR_EINTR : 0;
  return -errno;
}

/* ---- the doorbell -------------------------------------------------------------
 * One private word per process, moved by cr__bell_ring (a watch's thread,
 * corral/watch.h). A wait that may serve sleeps on it and on its own word
 * at once (futex_waitv); a kernel without futex_waitv (before 5.16) gets
 * the same effect from short sleeps. */

static _Atomic uint32_t bell;
static int no_waitv; /* futex_waitv answered ENOSYS */

#define BELL_POLL 0.005 /* seconds: a sleep's slice without futex_waitv */

void cr__bell_ring(void) {
  atomic_fetch_add(&bell, 1);
  syscall(SYS_futex, (uint32_t *)&bell, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Sleeps on w (shared, while == val) and on the bell (while == b) until
 * the deadline; the codes of cr__futex_sleep. */
static int sleep_two(_Atomic uint32_t *w, uint32_t val, uint32_t b, const cr__deadline_t *d) {
  if (!no_waitv) {
    struct futex_waitv v[2];
    memset(v, 0, sizeof v);
    v[0].val = val;
    v[0].uaddr = (uintptr_t)w;
    v[0].flags = FUTEX_32;
    v[1].val = b;
    v[1].uaddr = (uintptr_t)&bell;
    v[1].flags = FUTEX_32 | FUTEX_PRIVATE_FLAG;
    long rc = syscall(SYS_futex_waitv, v, 2, 0, d->forever ? NULL : &d->ts, CLOCK_MONOTONIC);
    if (rc >= 0 || errno == EAGAIN) return 0;
    if (errno == ETIMEDOUT) return CR_ETIMEDOUT;
    if (errno == EINTR) return cr_intr_pending() ? CR_EINTR : 0;
    if (errno != ENOSYS) return -errno;
    no_waitv = 1;
  }
  cr__deadline_t sl;
  cr__deadline_min(&sl, d, BELL_POLL);
  int rc = cr__futex_sleep(w, val, &sl);
  return rc == CR_ETIMEDOUT && !cr__deadline_expired(d) ? 0 : rc;
}

int cr__futex_wait(_Atomic uint32_t *w, uint32_t val, const cr__deadline_t *d) {
  cr_trace_flush(); /* what this process traced is written before it sleeps */
  if (!cr__engine_may_serve()) return cr__futex_sleep(w, val, d);
  /* The bell before the watches' flags: a ring after this load moves it. */
  uint32_t b = atomic_load(&bell);
  /* A SIGINT that came while the callbacks ran is this wait's. */
  if (cr__engine_serve_waiting()) return cr_intr_pending() ? CR_EINTR : 0;
  int rc = sleep_two(w, val, b, d);
  if (atomic_load(&bell) != b && cr__engine_serve_waiting() && rc == 0 && cr_intr_pending()) rc = CR_EINTR;
  return rc == CR_ETIMEDOUT || rc == CR_EINTR || rc < 0 ? rc : 0;
}

int cr__bell_sleep(const cr__deadline_t *d) {
  uint32_t b = atomic_load(&bell);
  if (cr__engine_serve_waiting()) return 0;
  int rc;
  if (!no_waitv) {
    long r = syscall(SYS_futex, (uint32_t *)&bell, FUTEX_WAIT_BITSET_PRIVATE, b, d->forever ? NULL : &d->ts,
                     NULL, FUTEX_BITSET_MATCH_ANY);
    rc = r == 0 || errno == EAGAIN ? 0 : errno == ETIMEDOUT ? CR_ETIMEDOUT
         : errno == EINTR ? (cr_intr_pending() ? CR_EINTR : 0) : -errno;
  } else {
    cr__deadline_t sl;
    cr__deadline_min(&sl, d, BELL_POLL);
    struct timespec rel = { 0, (long)(cr__deadline_left(&sl) * 1e9) };
    rc = nanosleep(&rel, NULL) < 0 && errno == EINTR && cr_intr_pending() ? CR_EINTR : 0;
    if (rc == 0 && cr__deadline_expired(d)) rc = CR_ETIMEDOUT;
  }
  if (atomic_load(&bell) != b) cr__engine_serve_waiting();
  return rc;
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
