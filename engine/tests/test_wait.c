/* Tests of the engine's one wait protocol (engine/src/wait_int.h): the
 * codes a futex wait returns, and the spin budget. A signal is delivered
 * by a child that sends it every 10 ms until told to stop, so no test
 * sleeps to let things happen. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "../src/wait_int.h"

static void on_signal(int sig) { (void)sig; }

/* A child that sends `sig` to this process until `done` is set. */
static pid_t pester(cr_arena_t *a, cr_off_t done, int sig) {
  pid_t parent = getpid();
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    while (cr_event_wait(a, done, 0.01) == CR_ETIMEDOUT) kill(parent, sig);
    _exit(0);
  }
  return pid;
}

static void stop(cr_arena_t *a, cr_off_t done, pid_t pid) {
  cr_event_set(a, done);
  int st;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  cr_event_clear(a, done);
}

/* 0 when the word differs or a signal other than SIGINT cuts the sleep
 * short; CR_ETIMEDOUT at the deadline, even one already past; CR_EINTR for
 * SIGINT inside a cr_intr_begin/end bracket. */
void test_wait_codes(void) {
  cr_arena_t *a;
  CHECK_OK(cr_arena_create(&a, 1 << 20));
  cr_off_t done;
  CHECK_OK(cr_event_new(a, &done));
  _Atomic uint32_t w = 1;
  cr__deadline_t d, forever;
  cr__deadline_set(&forever, -1);
  CHECK_EQ(cr__futex_wait(&w, 0, &forever), 0);
  cr__deadline_set(&d, 0);
  CHECK_EQ(cr__futex_wait(&w, 1, &d), CR_ETIMEDOUT);
  cr__deadline_set(&d, 0.01);
  CHECK_EQ(cr__futex_wait(&w, 1, &d), CR_ETIMEDOUT);
  CHECK(cr__deadline_expired(&d));

  struct sigaction sa = {0};
  sa.sa_handler = on_signal; /* no SA_RESTART: the sleep sees EINTR */
  sigaction(SIGUSR1, &sa, NULL);
  pid_t pid = pester(a, done, SIGUSR1);
  cr__deadline_set(&d, 30);
  CHECK_EQ(cr__futex_wait(&w, 1, &d), 0);
  CHECK(!cr__deadline_expired(&d));
  stop(a, done, pid);

  signal(SIGINT, on_signal); /* for a SIGINT that lands outside the bracket */
  pid = pester(a, done, SIGINT);
  cr_intr_begin();
  CHECK_EQ(cr__futex_wait(&w, 1, &forever), CR_EINTR);
  cr_intr_end();
  cr_intr_clear();
  stop(a, done, pid);
  cr_arena_close(a);
}

/* A spin lasts at least CR__SPIN_NS and then stays used up; alone on one
 * CPU it does not spin at all. cr__spin_while returns as soon as the word
 * differs. */
void test_wait_spin(void) {
  cr__spin_t plain = {0}, backoff = CR__SPIN_BACKOFF;
  cr__spin_t *spins[] = {&plain, &backoff};
  int alone = sysconf(_SC_NPROCESSORS_ONLN) < 2;
  for (int i = 0; i < 2; i++) {
    double t0 = cr_now();
    long steps = 0;
    while (cr__spin(spins[i])) steps++;
    double dt = cr_now() - t0;
    if (alone) {
      CHECK_EQ(steps, 0);
    } else {
      CHECK(steps > 0);
      CHECK(dt >= CR__SPIN_NS * 1e-9);
    }
    CHECK_EQ(cr__spin(spins[i]), 0);
  }
  _Atomic uint32_t w = 5;
  CHECK_EQ(cr__spin_while(&w, 4, &(cr__spin_t){0}), 1);
  CHECK_EQ(cr__spin_while(&w, 5, &(cr__spin_t){0}), 0);
}
