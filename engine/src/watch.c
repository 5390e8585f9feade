/* corral engine: watches and serving them (see corral/watch.h).
 *
 * A watch's thread sleeps on its queue's event word the way a getter does
 * (cr__ev_prepare, re-check, sleep), so producers need not know it exists.
 * When the queue has a message it rings: it disarms itself, flags the
 * watch, moves the process's doorbell (waits sleeping on it serve) and
 * sends the engine's async (a loop in uv_run serves). Serving runs the
 * callback, then re-arms the thread. The thread parks on a private control
 * word while disarmed or paused. */
#define _GNU_SOURCE
#include "engine_int.h"
#include "chan_int.h"
#include "wait_int.h"
#include "corral/errors.h"
#include "corral/refs.h"
#include "corral/watch.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Bits of the control word. */
#define C_STOP   1u
#define C_PAUSED 2u
#define C_ARMED  4u
#define C_PARKED 8u /* the thread sleeps on the control word */

struct cr_watch_s {
  cr_engine_t *e;
  struct cr_watch_s *next;
  cr_off_t q;
  cr_watch_cb cb;
  void *data;
  int pid;                 /* the process whose watch it is */
  int dead;                /* stopped inside a serve: freed once it ends */
  int closed_rung;         /* rang for the queue's close already */
  pthread_t thread;
  _Atomic uint32_t ctl;
  _Atomic int rung;
};

static void ctl_wake(cr_watch_t *w) {
  syscall(SYS_futex, (uint32_t *)&w->ctl, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Sets bits `set`, clears bits `clear`; wakes the thread if it is parked
 * and now has something to do (watch, or stop). */
static void ctl_change(cr_watch_t *w, uint32_t set, uint32_t clear) {
  uint32_t old = atomic_load(&w->ctl), nv;
  do {
    nv = (old | set) & ~clear;
    if (nv == old) return;
  } while (!atomic_compare_exchange_weak(&w->ctl, &old, nv));
  int runs = (nv & C_STOP) || ((nv & C_ARMED) && !(nv & C_PAUSED));
  if ((old & C_PARKED) && runs) ctl_wake(w);
}

/* Flags w and rings: the doorbell for waits, the async for a loop. */
static void ring(cr_watch_t *w) {
  atomic_store(&w->rung, 1);
  atomic_store(&w->e->rung, 1);
  cr__bell_ring();
  uv_async_send(&w->e->serve_async);
}

static void *watch_thread(void *arg) {
  cr_watch_t *w = arg;
  cr_arena_t *a = w->e->arena;
  _Atomic uint32_t *ev = cr__queue_get_ev(a, w->q);
  cr__deadline_t forever;
  cr__deadline_set(&forever, -1);
  for (;;) {
    uint32_t c = atomic_load(&w->ctl);
    if (c & C_STOP) break;
    if (!(c & C_ARMED) || (c & C_PAUSED)) {
      if (!atomic_compare_exchange_strong(&w->ctl, &c, c | C_PARKED)) continue;
      syscall(SYS_futex, (uint32_t *)&w->ctl, FUTEX_WAIT_PRIVATE, c | C_PARKED, NULL, NULL, 0);
      atomic_fetch_and(&w->ctl, ~C_PARKED);
      continue;
    }
    uint32_t v = cr__ev_prepare(ev);
    int closed = cr_queue_is_closed(a, w->q);
    if (cr__queue_backlog(a, w->q) > 0 || (closed && !w->closed_rung)) {
      if (atomic_compare_exchange_strong(&w->ctl, &c, c & ~C_ARMED)) {
        if (closed) w->closed_rung = 1;
        ring(w);
      }
      continue;
    }
    if (atomic_load(&w->ctl) != c) continue;
    cr__futex_sleep(ev, v, &forever);
  }
  return NULL;
}

int cr_queue_watch(cr_engine_t *e, cr_off_t q, cr_watch_cb cb, void *data, cr_watch_t **out) {
  if (cr_obj_check(e->arena, q, CR_OBJ_QUEUE) < 0) return CR_EINVAL;
  cr_watch_t *w = calloc(1, sizeof *w);
  if (!w) return -ENOMEM;
  w->e = e;
  w->q = q;
  w->cb = cb;
  w->data = data;
  w->pid = e->pid;
  atomic_init(&w->ctl, C_ARMED);
  cr_obj_retain(e->arena, q);
  int rc = cr_refs_take(e, q);
  if (rc < 0) {
    cr_obj_drop(e->arena, q);
    free(w);
    return rc;
  }
  /* The thread starts with every signal blocked: they are the main
   * thread's (SIGINT in a wait, SIGCHLD for the loop). */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = -pthread_create(&w->thread, NULL, watch_thread, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc < 0) {
    cr_refs_drop(e, q);
    free(w);
    return rc;
  }
  w->next = e->watches;
  e->watches = w;
  e->nwatches++;
  *out = w;
  return 0;
}

static void unlink_watch(cr_engine_t *e, cr_watch_t *w) {
  for (cr_watch_t **pp = &e->watches; *pp; pp = &(*pp)->next)
    if (*pp == w) {
      *pp = w->next;
      e->nwatches--;
      return;
    }
}

void cr_watch_stop(cr_watch_t *w) {
  if (!w || w->dead) return;
  cr_engine_t *e = w->e;
  if (w->pid != getpid()) { /* inherited through fork: no thread here */
    cr_refs_drop(e, w->q); /* the copy of its reference this process got */
    free(w);
    return;
  }
  ctl_change(w, C_STOP, 0);
  cr__ev_notify(cr__queue_get_ev(e->arena, w->q)); /* if it sleeps on the queue */
  pthread_join(w->thread, NULL);
  cr_refs_drop(e, w->q);
  if (e->serving) { /* the serve that runs now frees it */
    w->dead = 1;
    return;
  }
  unlink_watch(e, w);
  free(w);
}

void cr_watch_pause(cr_watch_t *w, int paused) {
  if (!w || w->dead || w->pid != getpid()) return;
  if (paused) ctl_change(w, C_PAUSED, 0);
  else ctl_change(w, 0, C_PAUSED);
}

/* ---- serving ------------------------------------------------------------------ */

void cr__watch_ring_all(cr_engine_t *e) {
  if (!e->watches || e->pid != getpid()) return;
  for (cr_watch_t *w = e->watches; w; w = w->next) atomic_store(&w->rung, 1);
  atomic_store(&e->rung, 1);
  cr__bell_ring();
  uv_async_send(&e->serve_async);
}

void cr_engine_serve(cr_engine_t *e) {
  /* Past cr_engine_finish nothing is served: a pool would replace the
   * workers that the at-exit policy just terminated. */
  if (!e || e->serving || e->finished || e->pid != getpid()) return;
  e->serving = 1;
  cr__proc_reap(e); /* a death rings every watch */
  if (atomic_exchange(&e->child_rang, 0))
    for (cr_watch_t *w = e->watches; w; w = w->next) atomic_store(&w->rung, 1);
  if (atomic_exchange(&e->rung, 0)) {
    for (cr_watch_t *w = e->watches; w; w = w->next) {
      if (w->dead || !atomic_exchange(&w->rung, 0)) continue;
      w->cb(w, w->data);
      if (!w->dead) ctl_change(w, C_ARMED, 0);
    }
  }
  for (cr_watch_t **pp = &e->watches; *pp;) {
    cr_watch_t *w = *pp;
    if (w->dead) {
      *pp = w->next;
      e->nwatches--;
      free(w);
    } else {
      pp = &w->next;
    }
  }
  e->serving = 0;
}

/* Whether the engine's own loop has events waiting (a SIGCHLD that came
 * outside any wait is one: libuv's handler wrote it to the loop). */
static int loop_pending(cr_engine_t *e) {
  struct pollfd p = {uv_backend_fd(e->loop), POLLIN, 0};
  return p.fd >= 0 && poll(&p, 1, 0) > 0;
}

int cr__engine_serve_waiting(void) {
  cr_engine_t *e = cr_engine_default();
  if (!e) return 0;
  /* A host's loop is the host's to run; the engine's own is run here, so
   * that what it noticed (a child's end) rings the watches. */
  int ran = 0;
  if (!atomic_load(&e->rung) && e->owns_loop && !e->serving && loop_pending(e)) {
    cr__engine_run_nowait(e);
    ran = 1;
  }
  if (!atomic_load(&e->rung)) return ran;
  cr_engine_serve(e);
  return 1;
}

void cr__watch_after_fork(cr_engine_t *e) {
  /* The structures stay for whoever holds them (cr_watch_stop frees them). */
  e->watches = NULL;
  e->nwatches = 0;
  e->serving = 0;
  atomic_store(&e->rung, 0);
  atomic_store(&e->child_rang, 0);
}

void cr__watch_close_all(cr_engine_t *e) {
  while (e->watches) cr_watch_stop(e->watches);
}
