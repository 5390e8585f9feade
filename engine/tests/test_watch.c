/* corral engine tests: watches (corral/watch.h): a queue's messages are
 * served on the host's loop by uv_run, by a blocking wait and by a sleep,
 * and uv_loop_close returns 0 after cr_engine_close. */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

typedef struct {
  cr_arena_t *a;
  cr_off_t q;
  int seen;     /* messages taken by the callback */
  uv_loop_t *loop;
} served_t;

static int drop(void *ud, const void *p, size_t len) {
  (void)ud;
  (void)p;
  (void)len;
  return 0;
}

static void on_ring(cr_watch_t *w, void *data) {
  (void)w;
  served_t *s = data;
  while (cr_queue_get(s->a, s->q, drop, NULL, 0) == 0) s->seen++;
  if (s->seen >= 3 && s->loop) uv_stop(s->loop);
}

/* Forked child: puts n messages into q, a short pause before each. */
static int producer_q;
static cr_arena_t *producer_a;
static int produce(void *arg) {
  int n = *(int *)arg;
  for (int i = 0; i < n; i++) {
    usleep(20000);
    if (cr_queue_put(producer_a, (cr_off_t)producer_q, "m", 1, -1) < 0) return 1;
  }
  return 0;
}

static cr_proc_t *start_producer(cr_engine_t *e, cr_off_t q, int *n) {
  producer_a = cr_engine_arena(e);
  producer_q = (int)q;
  cr_proc_options_t o;
  memset(&o, 0, sizeof o);
  o.child_fn = produce;
  o.child_arg = n;
  cr_proc_t *p;
  CHECK_OK(cr_proc_fork(e, &o, &p));
  return p;
}

static void on_limit(uv_timer_t *t) { uv_stop(t->loop); }

void test_watch_served_by_host_loop(void) {
  uv_loop_t loop;
  CHECK_OK(uv_loop_init(&loop));
  cr_engine_t *e;
  CHECK_OK(cr_engine_open(&e, &loop, 0));
  served_t s = {cr_engine_arena(e), 0, 0, &loop};
  CHECK_OK(cr_queue_new(s.a, 0, 0, &s.q));
  cr_watch_t *w;
  CHECK_OK(cr_queue_watch(e, s.q, on_ring, &s, &w));
  int n = 3;
  cr_proc_t *p = start_producer(e, s.q, &n);
  /* The host's loop has a timer of its own (a limit), and nothing else. */
  uv_timer_t limit;
  uv_timer_init(&loop, &limit);
  uv_timer_start(&limit, on_limit, 10000, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(s.seen, 3);
  CHECK_OK(cr_proc_join(p, 10));
  cr_proc_release(p);
  cr_watch_stop(w);
  cr_queue_release(s.a, s.q);
  cr_engine_close(e);
  uv_close((uv_handle_t *)&limit, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

void test_watch_served_in_waits(void) {
  cr_engine_t *e;
  CHECK_OK(cr_engine_open(&e, NULL, 0));
  served_t s = {cr_engine_arena(e), 0, 0, NULL};
  CHECK_OK(cr_queue_new(s.a, 0, 0, &s.q));
  cr_off_t other;
  CHECK_OK(cr_queue_new(s.a, 0, 0, &other));
  cr_watch_t *w;
  CHECK_OK(cr_queue_watch(e, s.q, on_ring, &s, &w));
  int n = 3;
  cr_proc_t *p = start_producer(e, s.q, &n);
  /* A get on another queue serves the watch while it waits. */
  double t0 = cr_now();
  while (s.seen < 2 && cr_now() - t0 < 10) CHECK_EQ(cr_queue_get(s.a, other, drop, NULL, 0.5), CR_EEMPTY);
  CHECK(s.seen >= 2);
  /* So does a sleep. */
  while (s.seen < 3 && cr_now() - t0 < 10) CHECK_OK(cr_sleep(0.5));
  CHECK_EQ(s.seen, 3);
  CHECK_OK(cr_proc_join(p, 10));
  cr_proc_release(p);
  /* Paused, it does not ring: the message stays for its owner. */
  cr_watch_pause(w, 1);
  CHECK_OK(cr_queue_put(s.a, s.q, "x", 1, 0));
  CHECK_OK(cr_sleep(0.05));
  CHECK_EQ(s.seen, 3);
  cr_watch_pause(w, 0);
  t0 = cr_now();
  while (s.seen < 4 && cr_now() - t0 < 10) CHECK_OK(cr_sleep(0.05));
  CHECK_EQ(s.seen, 4);
  cr_watch_stop(w);
  cr_queue_release(s.a, s.q);
  cr_queue_release(s.a, other);
  cr_engine_close(e);
}

static int exit_now(void *arg) {
  (void)arg;
  return 7;
}

/* With signal handling off the engine installs no SIGCHLD handler; the
 * host's cr_engine_serve (corral_reap) notices the child's end. */
void test_engine_no_signals(void) {
  cr_engine_handle_signals(0);
  cr_engine_t *e;
  CHECK_OK(cr_engine_open(&e, NULL, 0));
  cr_proc_options_t o;
  memset(&o, 0, sizeof o);
  o.child_fn = exit_now;
  cr_proc_t *p;
  CHECK_OK(cr_proc_fork(e, &o, &p));
  struct sigaction sa;
  sigaction(SIGCHLD, NULL, &sa);
  CHECK(!(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == SIG_DFL);
  double t0 = cr_now();
  while (cr_proc_state(p) == CR_PROC_RUNNING && cr_now() - t0 < 10) {
    cr_engine_serve(e);
    usleep(1000);
  }
  CHECK_EQ(cr_proc_state(p), CR_PROC_EXITED);
  CHECK_EQ(cr_proc_exitcode(p), 7);
  cr_proc_release(p);
  cr_engine_close(e);
}
