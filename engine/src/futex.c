/* corral engine: futex waits, spinning, thread ids and process identities
 * for the synchronisation primitives (see sync_int.h). Linux only. */
#define _GNU_SOURCE
#include "sync_int.h"
#include "corral/errors.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ---- futex ------------------------------------------------------------------- */

int cr__futex_wait(_Atomic uint32_t *w, uint32_t val, const cr__deadline_t *d) {
  if (!d->forever && cr__deadline_expired(d)) return CR_ETIMEDOUT;
  long rc = syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_BITSET, val, d->forever ? NULL : &d->ts,
                    NULL, FUTEX_BITSET_MATCH_ANY);
  if (rc == 0) return 0;
  if (errno == EAGAIN) return 0;
  if (errno == ETIMEDOUT) return CR_ETIMEDOUT;
  if (errno == EINTR) return -EINTR;
  return -errno;
}

void cr__futex_wake(_Atomic uint32_t *w, int n) {
  syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, n, NULL, NULL, 0);
}

int cr__ncpu(void) {
  static int n;
  if (!n) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    n = c > 0 ? (int)c : 1;
  }
  return n;
}

void cr__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

int cr__spin_while(_Atomic uint32_t *w, uint32_t val, long ns) {
  if (cr__ncpu() < 2 || ns <= 0) return atomic_load_explicit(w, memory_order_acquire) != val;
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    for (int i = 0; i < 64; i++) {
      if (atomic_load_explicit(w, memory_order_acquire) != val) return 1;
      cr__cpu_relax();
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
    long el = (long)(t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec);
    if (el >= ns) return atomic_load_explicit(w, memory_order_acquire) != val;
  }
}

/* ---- identities ------------------------------------------------------------ */

static _Thread_local int tid_cache;
static uint64_t self_id_cache;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void after_fork_child(void) {
  tid_cache = 0;
  self_id_cache = 0;
}

static void register_atfork(void) { pthread_atfork(NULL, NULL, after_fork_child); }

int cr__tid(void) {
  if (!tid_cache) {
    pthread_once(&atfork_once, register_atfork);
    tid_cache = (int)syscall(SYS_gettid);
  }
  return tid_cache;
}

/* State letter and start time of a process from /proc/PID/stat. Returns 0,
 * or -1 when there is no such process. */
static int proc_stat(int pid, char *state, unsigned long long *start) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  /* the command name (field 2) may hold spaces and parentheses: skip to the
   * last ')' */
  char *p = strrchr(buf, ')');
  if (!p || p[1] != ' ') return -1;
  p += 2;
  *state = *p;
  /* fields 3..22: state is field 3, starttime field 22 */
  for (int field = 3; field < 22; field++) {
    p = strchr(p, ' ');
    if (!p) return -1;
    p++;
  }
  *start = strtoull(p, NULL, 10);
  return 0;
}

uint64_t cr__self_id(void) {
  if (!self_id_cache) {
    pthread_once(&atfork_once, register_atfork);
    char st;
    unsigned long long start = 0;
    int pid = getpid();
    proc_stat(pid, &st, &start);
    self_id_cache = ((uint64_t)(uint32_t)pid << 32) | (uint32_t)start;
  }
  return self_id_cache;
}

int cr__pid_alive(int pid) {
  if (pid <= 0) return 0;
  if (kill(pid, 0) < 0 && errno == ESRCH) return 0;
  char st;
  unsigned long long start;
  if (proc_stat(pid, &st, &start) < 0) /* gone meanwhile, or no /proc */
    return kill(pid, 0) == 0 || errno == EPERM;
  return st != 'Z' && st != 'X'; /* a zombie has ended, not yet reaped */
}

int cr__id_alive(uint64_t id) {
  int pid = CR__ID_PID(id);
  if (pid <= 0) return 0;
  if (kill(pid, 0) < 0 && errno == ESRCH) return 0;
  char st;
  unsigned long long start;
  if (proc_stat(pid, &st, &start) < 0) /* no /proc: trust kill() alone */
    return kill(pid, 0) == 0 || errno == EPERM;
  if (st == 'Z' || st == 'X') return 0; /* ended, not yet reaped */
  return (uint32_t)start == (uint32_t)id;
}
