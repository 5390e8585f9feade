/* corral engine: futex waits, event words, spinning and pids for the
 * channels (see chan_int.h). Linux only. */
#define _GNU_SOURCE
#include "chan_int.h"
#include "corral/engine.h"
#include "corral/errors.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- deadlines ------------------------------------------------------------- */

static void ts_add(struct timespec *ts, double s) {
  if (s > 1e9) s = 1e9; /* ~31 years: as good as forever */
  time_t whole = (time_t)s;
  ts->tv_sec += whole;
  ts->tv_nsec += (long)((s - (double)whole) * 1e9);
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

static int ts_before(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

void cr__chan_deadline(cr__chan_deadline_t *d, double timeout) {
  d->forever = timeout < 0;
  clock_gettime(CLOCK_MONOTONIC, &d->ts);
  if (!d->forever && timeout > 0) ts_add(&d->ts, timeout);
}

int cr__chan_expired(const cr__chan_deadline_t *d) {
  if (d->forever) return 0;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return !ts_before(&now, &d->ts);
}

void cr__chan_slice(cr__chan_deadline_t *out, const cr__chan_deadline_t *d, double slice) {
  out->forever = 0;
  clock_gettime(CLOCK_MONOTONIC, &out->ts);
  ts_add(&out->ts, slice);
  if (!d->forever && ts_before(&d->ts, &out->ts)) out->ts = d->ts;
}

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

int cr__ev_wait(_Atomic uint32_t *ev, uint32_t val, const cr__chan_deadline_t *d) {
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

static int ncpu;

int cr__chan_spin(cr__chan_spin_t *s) {
  if (!ncpu) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    ncpu = n > 0 ? (int)n : 1;
  }
  if (ncpu < 2) return 0; /* the other side cannot run while we spin */
  if (s->n == 0) clock_gettime(CLOCK_MONOTONIC, &s->t0);
  s->n++;
  if ((s->n & 15u) == 0) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ns = (long)(now.tv_sec - s->t0.tv_sec) * 1000000000L + (now.tv_nsec - s->t0.tv_nsec);
    if (ns > CR__CHAN_SPIN_NS) return 0;
  }
  if (s->n > 64) sched_yield();
  else {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
  }
  return 1;
}

/* ---- pids ---------------------------------------------------------------------- */

static int self_pid;
static int atfork_done;

static void self_reset(void) { self_pid = (int)getpid(); }

int cr__chan_self(void) {
  if (!self_pid) {
    if (!atfork_done) {
      atfork_done = 1;
      pthread_atfork(NULL, NULL, self_reset);
    }
    self_pid = (int)getpid();
  }
  return self_pid;
}

int cr__chan_pid_alive(int pid) {
  if (pid <= 0) return 0;
  if (pid == cr__chan_self()) return 1;
  if (kill(pid, 0) < 0 && errno == ESRCH) return 0;
  /* It exists; a zombie (dead, not yet reaped) does not count. */
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : 1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 1;
  buf[n] = 0;
  const char *p = strrchr(buf, ')');
  if (!p || !p[1] || !p[2]) return 1;
  return !(p[2] == 'Z' || p[2] == 'X');
}
