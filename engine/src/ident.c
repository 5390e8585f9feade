/* corral engine: this thread's id and process identities that survive pid
 * reuse, for the synchronisation primitives and the channels (see
 * sync_int.h). Linux only. */
#define _GNU_SOURCE
#include "sync_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

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
