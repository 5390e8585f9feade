/* corral engine: the engine instance, waiting, and SIGINT during waits. */
#define _GNU_SOURCE
#include "engine_int.h"
#include "corral/errors.h"
#include "corral/log.h"
#include "corral/trace.h"
#include "corral/watch.h"
#include "wait_int.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static cr_engine_t *default_engine;
static int atexit_registered;

cr_engine_t *cr_engine_default(void) { return default_engine; }
void cr_engine_set_default(cr_engine_t *e) { default_engine = e; }
uv_loop_t *cr_engine_loop(cr_engine_t *e) { return e->loop; }
cr_arena_t *cr_engine_arena(cr_engine_t *e) { return e->arena; }
int cr_engine_pid(const cr_engine_t *e) { return e->pid; }

static void on_exit_finish(void) {
  if (default_engine && default_engine->pid == getpid()) cr_engine_finish(default_engine);
}

static void on_wake(uv_async_t *h) { (void)h; }
static void on_timer(uv_timer_t *h) { (void)h; }

/* A watch rang: serve from the loop (a wait's uv_run, or the host's). */
static void on_serve(uv_async_t *h) {
  cr_engine_t *e = h->data;
  if (e->serving) return; /* the serve running now sees the ring */
  e->loop_serving = 1;
  cr_engine_serve(e);
  e->loop_serving = 0;
}

/* The engine's own handles on its loop, none keeping the loop alive. */
static void init_handles(cr_engine_t *e) {
  uv_async_init(e->loop, &e->wake, on_wake);
  uv_unref((uv_handle_t *)&e->wake);
  uv_timer_init(e->loop, &e->timer);
  uv_unref((uv_handle_t *)&e->timer);
  uv_async_init(e->loop, &e->serve_async, on_serve);
  e->serve_async.data = e;
  uv_unref((uv_handle_t *)&e->serve_async);
}

/* Sets up loop, handles and bookkeeping around an arena. */
static int engine_init(cr_engine_t **out, uv_loop_t *loop, cr_arena_t *arena) {
  cr_engine_t *e = calloc(1, sizeof *e);
  if (!e) return -ENOMEM;
  int rc;
  if (loop) {
    e->loop = loop;
  } else {
    rc = uv_loop_init(&e->own_loop);
    if (rc < 0) {
      free(e);
      return rc;
    }
    e->loop = &e->own_loop;
    e->owns_loop = 1;
  }
  e->arena = arena;
  e->pid = getpid();
  e->refs_slot = -1;
  init_handles(e);
  if (!default_engine) default_engine = e;
  if (!atexit_registered) {
    atexit_registered = 1;
    atexit(on_exit_finish);
  }
  *out = e;
  return 0;
}

/* The engine over arena a (closed on failure), with this process in its
 * process table; `created`: a new arena, whose table is made here. */
static int engine_start(cr_engine_t **out, uv_loop_t *loop, cr_arena_t *a, int created) {
  int rc = engine_init(out, loop, a);
  if (rc < 0) {
    cr_arena_close(a);
    return rc;
  }
  rc = cr__refs_open(*out, created);
  if (rc < 0) cr_engine_close(*out);
  return rc;
}

int cr_engine_open(cr_engine_t **out, uv_loop_t *loop, size_t arena_size) {
  cr_arena_t *a;
  int rc = cr_arena_create(&a, arena_size);
  return rc < 0 ? rc : engine_start(out, loop, a, 1);
}

int cr_engine_attach(cr_engine_t **out, uv_loop_t *loop, int arena_fd) {
  cr_arena_t *a;
  int rc = cr_arena_attach(&a, arena_fd);
  return rc < 0 ? rc : engine_start(out, loop, a, 0);
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

void cr_engine_close(cr_engine_t *e) {
  if (!e) return;
  if (e->pid == getpid()) cr__watch_close_all(e);
  cr__refs_close(e);
  cr__proc_forget_all(e);
  if (e->owns_loop) {
    uv_walk(e->loop, close_walk, NULL);
    uv_run(e->loop, UV_RUN_DEFAULT);
    uv_loop_close(e->loop);
  } else {
    uv_close((uv_handle_t *)&e->wake, NULL);
    uv_close((uv_handle_t *)&e->timer, NULL);
    uv_close((uv_handle_t *)&e->serve_async, NULL);
    if (e->sigchld_on) uv_close((uv_handle_t *)&e->sigchld, NULL);
    uv_run(e->loop, UV_RUN_NOWAIT);
  }
  cr_arena_close(e->arena);
  if (default_engine == e) default_engine = NULL;
  free(e);
}

static void on_sigchld(uv_signal_t *h, int signum) {
  (void)signum;
  cr__proc_reap(h->data);
}

static int signals_off;

void cr_engine_handle_signals(int on) { signals_off = !on; }

int cr__engine_watch_children(cr_engine_t *e) {
  if (e->sigchld_on || signals_off) return 0;
  int rc = uv_signal_init(e->loop, &e->sigchld);
  if (rc < 0) return rc;
  e->sigchld.data = e;
  rc = uv_signal_start(&e->sigchld, on_sigchld, SIGCHLD);
  if (rc < 0) {
    uv_close((uv_handle_t *)&e->sigchld, NULL);
    return rc;
  }
  uv_unref((uv_handle_t *)&e->sigchld);
  e->sigchld_on = 1;
  return 0;
}

/* In a forked child. The parent's loop shares its epoll and signal pipe with
 * the parent: uv_loop_fork gives it private ones so nothing of ours reaches
 * the parent, then we leave it untouched (its handles belong to the parent
 * or the host) and run on a fresh loop of our own. */
static void intr_after_fork(void);

void cr__engine_after_fork(cr_engine_t *e) {
  intr_after_fork();
  uv_loop_fork(e->loop);
  cr__proc_forget_all(e);
  e->pid = getpid();
  e->finished = 0;
  e->sigchld_on = 0;
  memset(&e->own_loop, 0, sizeof e->own_loop);
  if (uv_loop_init(&e->own_loop) < 0) _exit(70);
  e->loop = &e->own_loop;
  e->owns_loop = 1;
  cr__watch_after_fork(e);
  init_handles(e);
  default_engine = e;
}

/* Runs what is ready in the loop without blocking. uv_run does nothing at
 * all on a loop with no referenced handle, and ours are unreferenced (so as
 * not to keep a host's loop alive): hold a reference for the call. */
void cr__engine_run_nowait(cr_engine_t *e) {
  if (e->loop_serving) return; /* inside the loop already: it comes round */
  uv_ref((uv_handle_t *)&e->wake);
  uv_run(e->loop, UV_RUN_NOWAIT);
  uv_unref((uv_handle_t *)&e->wake);
}

int cr_engine_wait(cr_engine_t *e, double timeout, int (*done)(void *), void *arg) {
  double deadline = timeout >= 0 ? cr_now() + timeout : 0;
  int rc = 0;
  cr_intr_begin();
  /* Keep the loop blocking while we wait even if nothing else is ref'd. */
  uv_ref((uv_handle_t *)&e->wake);
  for (;;) {
    if (done(arg)) break;
    if (cr_intr_pending()) {
      rc = CR_EINTR;
      break;
    }
    if (timeout >= 0) {
      double left = deadline - cr_now();
      if (left <= 0) {
        rc = CR_ETIMEDOUT;
        break;
      }
      uint64_t ms = (uint64_t)(left * 1000.0);
      if ((double)ms < left * 1000.0) ms++; /* never wake before the deadline */
      /* The loop's clock is cached: stale (the loop sat idle longer than
       * ms), the timer would be due at once, run before the poll, and the
       * poll would then block with no timer left, until some other event. */
      uv_update_time(e->loop);
      uv_timer_start(&e->timer, on_timer, ms, 0);
    }
    cr_trace_flush(); /* what this process traced is written before it sleeps */
    uv_run(e->loop, UV_RUN_ONCE);
    uv_timer_stop(&e->timer);
  }
  uv_unref((uv_handle_t *)&e->wake);
  cr_intr_end();
  return rc;
}

void cr_engine_finish(cr_engine_t *e) {
  if (!e || e->finished || e->pid != getpid()) return;
  e->finished = 1;
  cr_proc_t *p;
  for (p = e->children; p; p = p->next)
    if (p->daemon && p->state == CR_PROC_RUNNING && p->owner_pid == e->pid) {
      if (cr_log_enabled(CR_LOG_INFO))
        cr_log(CR_LOG_INFO, "at exit: terminating daemon %s (pid %d)", p->name, p->pid);
      cr_proc_signal(p, SIGTERM);
    }
  /* A join unlinks every child reaped meanwhile (p->next too): start over. */
  for (p = e->children; p;) {
    int join = p->state == CR_PROC_RUNNING && p->owner_pid == e->pid;
    if (join && !p->daemon && cr_log_enabled(CR_LOG_INFO))
      cr_log(CR_LOG_INFO, "at exit: joining %s (pid %d)", p->name, p->pid);
    p = join && cr_proc_join(p, -1) == 0 ? e->children : p->next;
  }
  cr__trace_at_exit();
}

double cr_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int cr_sleep(double seconds) {
  if (seconds <= 0) return 0;
  cr_intr_begin();
  if (cr__engine_may_serve()) { /* sleep on the doorbell, serving */
    cr__deadline_t d;
    cr__deadline_set(&d, seconds);
    int rc;
    do rc = cr_intr_pending() ? CR_EINTR : cr__bell_sleep(&d);
    while (rc == 0);
    cr_intr_end();
    return rc == CR_ETIMEDOUT ? 0 : rc;
  }
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  double whole = (double)(time_t)seconds;
  deadline.tv_sec += (time_t)seconds;
  deadline.tv_nsec += (long)((seconds - whole) * 1e9);
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000L;
  }
  int rc = 0;
  for (;;) {
    if (cr_intr_pending()) {
      rc = CR_EINTR;
      break;
    }
    if (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL) != EINTR) break;
  }
  cr_intr_end();
  return rc;
}

/* ---- signals during waits ---------------------------------------------- */

/* SIGINT inside a wait belongs to the wait: the handler only sets the flag
 * and wakes the loop, and the wait returns CR_EINTR, which the caller
 * reports (the bindings raise Interrupted). The handler that was there
 * before is not called: a host's own reaction (lua.c's hook raising
 * "interrupted!") would fire a second time once the caller had handled the
 * first, and cleanup code catching Interrupted would never run. A SIGINT
 * that the wait did not act on (it came as the wait ended for another
 * reason) is passed on, once the previous handler is back, by
 * cr_intr_end. */
static volatile sig_atomic_t intr_flag;
static volatile sig_atomic_t intr_seen; /* a wait saw the flag: it returns CR_EINTR */
static int intr_depth;
static struct sigaction intr_prev, chld_prev;

static void chain(const struct sigaction *prev, int sig, siginfo_t *si, void *uc) {
  if (prev->sa_flags & SA_SIGINFO) {
    if (prev->sa_sigaction) prev->sa_sigaction(sig, si, uc);
  } else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
    prev->sa_handler(sig);
  }
}

static void intr_handler(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)si;
  (void)uc;
  intr_flag = 1;
  if (default_engine && default_engine->pid == getpid()) uv_async_send(&default_engine->wake);
}

/* A child's end, during a wait: the handler before us (libuv's) first,
 * then the engine's watches ring, so that whoever serves a pool hears of
 * it in any wait (cr_engine_serve reaps, and rings them all). */
static void chld_handler(int sig, siginfo_t *si, void *uc) {
  chain(&chld_prev, sig, si, uc);
  cr_engine_t *e = default_engine;
  if (e && e->nwatches > 0 && e->pid == getpid()) {
    atomic_store(&e->child_rang, 1);
    atomic_store(&e->rung, 1);
    cr__bell_ring();
  }
}

/* Installs h for sig without SA_RESTART, so that blocking calls see EINTR. */
static int take_signal(int sig, void (*h)(int, siginfo_t *, void *), struct sigaction *prev) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = h;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, prev) < 0) return 0;
  if (!(prev->sa_flags & SA_SIGINFO) && prev->sa_handler == SIG_IGN) {
    sigaction(sig, prev, NULL); /* ignored on purpose: keep it so */
    return 0;
  }
  return 1;
}

/* Puts prev back for sig if h is still there; whether it was. */
static int give_signal(int sig, void (*h)(int, siginfo_t *, void *), const struct sigaction *prev) {
  struct sigaction cur;
  sigaction(sig, NULL, &cur);
  if (!((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == h)) return 0;
  sigaction(sig, prev, NULL);
  return 1;
}

void cr_intr_begin(void) {
  if (intr_depth++ > 0) return;
  intr_flag = 0;
  intr_seen = 0;
  if (signals_off) return;
  take_signal(SIGINT, intr_handler, &intr_prev);
  /* SIGCHLD only matters where libuv (or a host) handles it; with the
   * default action the signal is discarded and would never interrupt. */
  struct sigaction cur;
  sigaction(SIGCHLD, NULL, &cur);
  if ((cur.sa_flags & SA_SIGINFO) || (cur.sa_handler != SIG_DFL && cur.sa_handler != SIG_IGN))
    take_signal(SIGCHLD, chld_handler, &chld_prev);
}

void cr_intr_end(void) {
  if (--intr_depth > 0) return;
  int ours = give_signal(SIGINT, intr_handler, &intr_prev);
  give_signal(SIGCHLD, chld_handler, &chld_prev);
  if (ours && intr_flag && !intr_seen) { /* not acted on: it is the previous handler's */
    intr_flag = 0;
    raise(SIGINT);
  }
}

int cr_intr_pending(void) {
  if (!intr_flag) return 0;
  intr_seen = 1;
  return 1;
}

void cr_intr_clear(void) { intr_flag = 0; }

void cr_intr_post(void) {
  if (intr_depth > 0) {
    intr_flag = 1;
    intr_seen = 0;
  } else {
    raise(SIGINT);
  }
}

void cr_intr_pass(void) {
  if (!intr_flag) return;
  if (intr_depth > 0) {
    intr_seen = 0; /* cr_intr_end passes it on */
    return;
  }
  intr_flag = 0;
  raise(SIGINT); /* the previous handler is back */
}

/* A child forked inside a wait (a pool replacing a worker from a loop
 * callback) starts with no wait in progress. */
static void intr_after_fork(void) {
  if (intr_depth == 0) return;
  give_signal(SIGINT, intr_handler, &intr_prev);
  give_signal(SIGCHLD, chld_handler, &chld_prev);
  intr_depth = 0;
  intr_flag = 0;
  intr_seen = 0;
}

int cr__engine_may_serve(void) {
  cr_engine_t *e = default_engine;
  return e && e->nwatches > 0 && intr_depth > 0 && !e->serving && !e->finished && e->pid == getpid();
}

void cr_engine_service(cr_engine_t *e) {
  if (!e || e->pid != getpid()) return;
  cr__engine_run_nowait(e);
  cr__proc_reap(e);
}
