/* corral engine: Lock, and the robust mutex that Lock, RLock and Barrier
 * share (see corral/sync.h for the design, sync_int.h for the internals).
 *
 * The mutex is a process-shared robust pthread mutex. Its futex word is the
 * kernel's robust-futex ABI: the owner's tid, FUTEX_WAITERS when someone may
 * sleep on it, FUTEX_OWNER_DIED once the kernel found its owner dead.
 * pthread_mutex_trylock does the acquiring (and the robust-list bookkeeping
 * that lets the kernel find the mutex when the owner dies);
 * pthread_mutex_unlock wakes one sleeper when FUTEX_WAITERS is set. Blocking
 * is ours: set FUTEX_WAITERS, sleep on the word with a monotonic deadline,
 * retry. Two rules keep wakeups from being lost, as glibc's own lock does:
 * a waiter that slept keeps FUTEX_WAITERS set once it owns the word (other
 * sleepers may remain), and a waiter woken but leaving without the lock
 * (timeout, SIGINT) passes the wake on. */
#define _GNU_SOURCE
#include "corral/sync.h"
#include "corral/engine.h"
#include "corral/errors.h"
#include "sync_int.h"

#include <errno.h>
#include <linux/futex.h>

/* The mutex's futex word, read and slept on directly. There is no
 * documented way to do what Lock needs through pthreads alone:
 * - pthread_mutex_timedlock / pthread_mutex_clocklock never return on a
 *   signal (POSIX rules EINTR out; glibc goes back to sleep after the
 *   handler), so SIGINT could not interrupt a blocked acquire, and they do
 *   not spin first;
 * - no pthread call tells who owns a mutex, which release, locked(), RLock
 *   and Condition need; a tid kept beside the mutex would go stale when
 *   its owner dies (and could then pass for a new thread given that tid),
 *   whereas the kernel clears the word's tid itself.
 * The word is glibc's private __data.__lock. What reading it relies on:
 * - glibc (NPTL), which keeps the word there: the layout of pthread_mutex_t
 *   is undocumented but part of glibc's ABI (binaries built against old
 *   headers keep working), and the kernel is told its offset through the
 *   robust list; other C libraries are refused at build time below;
 * - for a robust mutex the word is the kernel's robust-futex ABI
 *   (Documentation/locking/robust-futex-ABI.rst): the owner's tid,
 *   FUTEX_WAITERS, FUTEX_OWNER_DIED; the kernel rewrites it when the
 *   owner dies;
 * - glibc's trylock takes only a word without a tid (keeping FUTEX_WAITERS
 *   when it takes over from a dead owner), and its unlock swaps the word to
 *   0 and wakes one sleeper when FUTEX_WAITERS was set: so a waiter that
 *   sets that bit before sleeping is woken like one of glibc's own. */
#ifndef __GLIBC__
#error "lock.c reads glibc's pthread_mutex_t (see the comment above WORD)"
#endif
#define WORD(m) ((_Atomic uint32_t *)&(m)->__data.__lock)
_Static_assert(sizeof(((pthread_mutex_t *)0)->__data.__lock) == sizeof(uint32_t),
               "the futex word of pthread_mutex_t is 32 bits");

void cr__mutex_init(pthread_mutex_t *m) {
  pthread_mutexattr_t at;
  pthread_mutexattr_init(&at);
  pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
  pthread_mutexattr_settype(&at, PTHREAD_MUTEX_NORMAL);
  pthread_mutex_init(m, &at);
  pthread_mutexattr_destroy(&at);
}

/* 0 or CR_EOWNERDEAD (acquired), 1 (busy), or -errno. */
static int try_lock(pthread_mutex_t *m) {
  int rc = pthread_mutex_trylock(m);
  if (rc == 0) return 0;
  if (rc == EBUSY) return 1;
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(m);
    return CR_EOWNERDEAD;
  }
  return -rc;
}

/* We were woken but leave without the lock: make sure somebody else will
 * be woken in our place. */
static void pass_on(_Atomic uint32_t *w) {
  uint32_t v = atomic_load(w);
  for (;;) {
    if ((v & FUTEX_TID_MASK) == 0) {
      cr__futex_wake(w, 1);
      return;
    }
    if (v & FUTEX_WAITERS) return;
    if (atomic_compare_exchange_weak(w, &v, v | FUTEX_WAITERS)) return;
  }
}

int cr__mutex_lock(pthread_mutex_t *m, double timeout, int interruptible) {
  int rc = try_lock(m);
  if (rc <= 0) return rc;
  if (timeout == 0) return CR_ETIMEDOUT;
  cr__deadline_t d;
  cr__deadline_set(&d, timeout);
  _Atomic uint32_t *w = WORD(m);
  cr__spin_t spin = CR__SPIN_BACKOFF;
  int spinning = 1, slept = 0, woken = 0, intr_on = 0;
  for (;;) {
    rc = try_lock(m);
    if (rc <= 0) break;
    uint32_t v = atomic_load(w);
    if ((v & FUTEX_TID_MASK) == 0) continue; /* freed, or its owner died */
    /* Spin (with backoff) until the word changes (the holder released:
     * retry) or the spin budget is used up. Under heavy contention the
     * holder often takes the lock back first; spinning on is still far
     * cheaper than a sleep. */
    if (spinning) {
      if (cr__spin_while(w, v, &spin)) continue;
      spinning = 0;
    }
    if (cr__deadline_expired(&d)) {
      rc = CR_ETIMEDOUT;
      break;
    }
    if (!(v & FUTEX_WAITERS)) {
      if (!atomic_compare_exchange_strong(w, &v, v | FUTEX_WAITERS)) continue;
      v |= FUTEX_WAITERS;
    }
    if (interruptible && !intr_on) {
      cr_intr_begin();
      intr_on = 1;
    }
    woken = 0;
    slept = 1;
    int r = cr__futex_wait(w, v, &d);
    if (r == 0) {
      woken = 1;
    } else if (r != CR_EINTR || interruptible) {
      rc = r;
      break;
    }
  }
  if (rc == 0 || rc == CR_EOWNERDEAD) {
    if (slept) {
      uint32_t v = atomic_load(w);
      while (!(v & FUTEX_WAITERS) && !atomic_compare_exchange_weak(w, &v, v | FUTEX_WAITERS)) {
      }
    }
  } else if (woken) {
    pass_on(w);
  }
  if (intr_on) cr_intr_end();
  return rc;
}

int cr__mutex_unlock(pthread_mutex_t *m) {
  int rc = pthread_mutex_unlock(m);
  return rc ? -rc : 0;
}

int cr__mutex_owner(pthread_mutex_t *m) {
  return (int)(atomic_load_explicit(WORD(m), memory_order_relaxed) & FUTEX_TID_MASK);
}

/* ---- Lock ---------------------------------------------------------------- */

static cr__lock_t *lock_at(cr_arena_t *a, cr_off_t off) { return cr_arena_ptr(a, off); }

int cr_lock_new(cr_arena_t *a, cr_off_t *off) {
  int rc = cr_obj_new(a, CR_OBJ_LOCK, sizeof(cr__lock_t), off);
  if (rc < 0) return rc;
  cr__mutex_init(&lock_at(a, *off)->m);
  return 0;
}

int cr_lock_acquire(cr_arena_t *a, cr_off_t off, double timeout) {
  return cr__mutex_lock(&lock_at(a, off)->m, timeout, 1);
}

int cr_lock_release(cr_arena_t *a, cr_off_t off) {
  cr__lock_t *l = lock_at(a, off);
  int owner = cr__mutex_owner(&l->m);
  if (owner == 0) return CR_ETOOMANY;
  if (owner != cr__tid()) return CR_ENOTOWNER;
  return cr__mutex_unlock(&l->m);
}

int cr_lock_locked(cr_arena_t *a, cr_off_t off) { return cr__mutex_owner(&lock_at(a, off)->m) != 0; }

/* ---- dispatch over Lock and RLock, for Condition ------------------------- */

int cr__lock_owned(cr_arena_t *a, cr_off_t off) {
  cr_obj_t *o = cr_arena_ptr(a, off);
  pthread_mutex_t *m = o->kind == CR_OBJ_RLOCK ? &((cr__rlock_t *)o)->m : &((cr__lock_t *)o)->m;
  return cr__mutex_owner(m) == cr__tid();
}

int cr__lock_release_save(cr_arena_t *a, cr_off_t off, cr__lock_saved_t *s) {
  cr_obj_t *o = cr_arena_ptr(a, off);
  if (!cr__lock_owned(a, off)) return CR_ENOTOWNER;
  if (o->kind == CR_OBJ_RLOCK) {
    cr__rlock_t *r = (cr__rlock_t *)o;
    s->count = r->depth;
    r->depth = 0;
    return cr__mutex_unlock(&r->m);
  }
  s->count = 1;
  return cr__mutex_unlock(&((cr__lock_t *)o)->m);
}

int cr__lock_acquire_restore(cr_arena_t *a, cr_off_t off, const cr__lock_saved_t *s,
                             int interruptible) {
  cr_obj_t *o = cr_arena_ptr(a, off);
  if (o->kind == CR_OBJ_RLOCK) {
    cr__rlock_t *r = (cr__rlock_t *)o;
    int rc = cr__mutex_lock(&r->m, -1, interruptible);
    if (rc == 0 || rc == CR_EOWNERDEAD) r->depth = s->count;
    return rc;
  }
  return cr__mutex_lock(&((cr__lock_t *)o)->m, -1, interruptible);
}
