/* Tests of child processes: exit codes, signals, join timeouts, reaping,
 * spawn, daemon children dying with their parent. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

static cr_engine_t *open_engine(void) {
  cr_engine_t *e;
  CHECK_OK(cr_engine_open(&e, NULL, 1 << 20));
  return e;
}

static int exit_with(void *arg) { return (int)(long)arg; }
static int sleep_forever(void *arg) {
  (void)arg;
  for (;;) pause();
  return 0;
}

static cr_proc_t *fork_child(cr_engine_t *e, int (*fn)(void *), void *arg, int daemon) {
  cr_proc_options_t o;
  memset(&o, 0, sizeof o);
  o.child_fn = fn;
  o.child_arg = arg;
  o.daemon = daemon;
  cr_proc_t *p;
  CHECK_OK(cr_proc_fork(e, &o, &p));
  return p;
}

void test_proc_fork_exitcodes(void) {
  cr_engine_t *e = open_engine();
  int codes[] = {0, 1, 7, 255};
  for (int i = 0; i < 4; i++) {
    cr_proc_t *p = fork_child(e, exit_with, (void *)(long)codes[i], 0);
    CHECK(cr_proc_pid(p) > 0);
    CHECK_OK(cr_proc_join(p, 10));
    CHECK_EQ(cr_proc_state(p), CR_PROC_EXITED);
    CHECK_EQ(cr_proc_exitcode(p), codes[i]);
    cr_proc_release(p);
  }
  cr_engine_close(e);
}

void test_proc_fork_signal(void) {
  cr_engine_t *e = open_engine();
  cr_proc_t *p = fork_child(e, sleep_forever, NULL, 0);
  CHECK_OK(cr_proc_signal(p, SIGTERM));
  CHECK_OK(cr_proc_join(p, 10));
  CHECK_EQ(cr_proc_exitcode(p), -SIGTERM);
  CHECK_OK(cr_proc_signal(p, SIGKILL)); /* exited: a no-op, no error */
  cr_proc_release(p);
  cr_engine_close(e);
}

void test_proc_join_timeout(void) {
  cr_engine_t *e = open_engine();
  cr_proc_t *p = fork_child(e, sleep_forever, NULL, 0);
  double t0 = cr_now();
  CHECK_EQ(cr_proc_join(p, 0.05), CR_ETIMEDOUT);
  CHECK(cr_now() - t0 >= 0.05);
  CHECK_EQ(cr_proc_state(p), CR_PROC_RUNNING);
  CHECK_EQ(cr_proc_join(p, 0), CR_ETIMEDOUT);
  CHECK_OK(cr_proc_signal(p, SIGKILL));
  CHECK_OK(cr_proc_join(p, 10));
  CHECK_EQ(cr_proc_exitcode(p), -SIGKILL);
  cr_proc_release(p);
  cr_engine_close(e);
}

static int count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

void test_proc_many_no_zombies(void) {
  cr_engine_t *e = open_engine();
  int fds = count_fds();
  for (int i = 0; i < 300; i++) {
    cr_proc_t *p = fork_child(e, exit_with, (void *)(long)(i & 3), 0);
    CHECK_OK(cr_proc_join(p, 10));
    CHECK_EQ(cr_proc_exitcode(p), i & 3);
    cr_proc_release(p);
  }
  CHECK_EQ(count_fds(), fds);
  CHECK_EQ(cr_proc_count_running(e), 0);
  errno = 0;
  CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD); /* nothing left to reap */
  cr_engine_close(e);
}

void test_proc_spawn_exitcode(void) {
  cr_engine_t *e = open_engine();
  char *args[] = {"/bin/sh", "-c", "test -e /proc/self/fd/3 && exit 42", NULL};
  cr_proc_options_t o;
  memset(&o, 0, sizeof o);
  o.file = "/bin/sh";
  o.args = args;
  cr_proc_t *p;
  CHECK_OK(cr_proc_spawn(e, &o, &p));
  CHECK_OK(cr_proc_join(p, 10));
  CHECK_EQ(cr_proc_exitcode(p), 42); /* and the arena fd was inherited at 3 */
  cr_proc_release(p);
  char *args2[] = {"/bin/sh", "-c", "kill -9 $$", NULL};
  o.args = args2;
  CHECK_OK(cr_proc_spawn(e, &o, &p));
  CHECK_OK(cr_proc_join(p, 10));
  CHECK_EQ(cr_proc_exitcode(p), -SIGKILL);
  cr_proc_release(p);
  char *args3[] = {"/nonexistent/x", NULL};
  o.file = args3[0];
  o.args = args3;
  CHECK(cr_proc_spawn(e, &o, &p) < 0);
  cr_engine_close(e);
}

/* The middle process starts a daemon child and a non-daemon watcher, then is
 * SIGKILLed; the daemon must die with it. */
static int middle(void *arg) {
  int *pipefd = arg;
  cr_engine_t *e = cr_engine_default();
  cr_proc_t *d = fork_child(e, sleep_forever, NULL, 1);
  int pid = cr_proc_pid(d);
  if (write(pipefd[1], &pid, sizeof pid) != sizeof pid) return 3;
  for (;;) pause();
  return 0;
}

static int pidfd_readable_within(int fd, double seconds) {
  struct pollfd pf = {.fd = fd, .events = POLLIN};
  return poll(&pf, 1, (int)(seconds * 1000)) == 1;
}

void test_proc_daemon_dies_with_parent(void) {
  cr_engine_t *e = open_engine();
  int pipefd[2];
  CHECK(pipe(pipefd) == 0);
  cr_proc_t *m = fork_child(e, middle, pipefd, 0);
  int dpid = 0;
  CHECK(read(pipefd[0], &dpid, sizeof dpid) == sizeof dpid);
  CHECK(dpid > 0 && kill(dpid, 0) == 0);
  int pidfd = (int)syscall(SYS_pidfd_open, dpid, 0);
  CHECK(pidfd >= 0);
  CHECK(!pidfd_readable_within(pidfd, 0));
  CHECK_OK(cr_proc_signal(m, SIGKILL));
  CHECK_OK(cr_proc_join(m, 10));
  /* The daemon was reparented and killed: its pidfd turns readable when it
   * has exited (it is not our child, so there is nothing to reap). */
  CHECK(pidfd_readable_within(pidfd, 10.0));
  close(pidfd);
  cr_proc_release(m);
  cr_engine_close(e);
}
