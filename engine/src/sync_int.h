/* corral engine: internals shared by the synchronisation primitives
 * (lock.c, rlock.c, sem.c, event.c, cond.c, barrier.c, shm.c) and the
 * channels (queue.c, pipe.c, chan_util.c), implemented in futex.c: futex waits with CLOCK_MONOTONIC deadlines, the
 * bounded spin before sleeping, this thread's id, and process identities
 * that survive pid reuse. */
#ifndef CORRAL_SYNC_INT_H
#define CORRAL_SYNC_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "corral/arena.h"

/* ---- deadlines --------------------------------------------------------- */
typedef struct {
  int forever;          /* no deadline */
  struct timespec ts;   /* absolute, CLOCK_MONOTONIC */
} cr__deadline_t;

/* timeout < 0: forever; 0: already expired; else now + timeout. */
void cr__deadline_set(cr__deadline_t *d, double timeout);
/* Seconds from now to the deadline (never negative; huge when forever). */
double cr__deadline_left(const cr__deadline_t *d);
int cr__deadline_expired(const cr__deadline_t *d);
/* The earlier of `d` and now + `slice` seconds. */
void cr__deadline_min(cr__deadline_t *out, const cr__deadline_t *d, double slice);

/* ---- futex ---------------------------------------------------------------
 * Shared (not private) futexes: the words live in the arena, mapped by many
 * processes. Waits use FUTEX_WAIT_BITSET, whose timeout is an absolute
 * CLOCK_MONOTONIC time. */

/* Sleeps while *w == val, until woken or the deadline. Returns 0 when woken
 * (or *w != val already: the caller re-checks its condition either way),
 * CR_ETIMEDOUT, or -EINTR when a signal arrived (the caller checks
 * cr_intr_pending()). A waiter that was woken always gets 0, never
 * CR_ETIMEDOUT or -EINTR: the kernel settles that race, which is what lets
 * a waker count on its wake being consumed. */
int cr__futex_wait(_Atomic uint32_t *w, uint32_t val, const cr__deadline_t *d);
/* Wakes up to n waiters sleeping on w (INT32_MAX: all). */
void cr__futex_wake(_Atomic uint32_t *w, int n);

/* The bounded spin before sleeping: spins while *w == val for at most
 * `ns` nanoseconds. Returns 1 when the word changed. Spins not at all on a
 * single-CPU machine, where the other side cannot run while we spin. */
int cr__spin_while(_Atomic uint32_t *w, uint32_t val, long ns);
/* Online CPUs (cached), and one spin-wait pause instruction. */
int cr__ncpu(void);
void cr__cpu_relax(void);

/* Spin budgets (ns), chosen from the cost of waking a sleeping process
 * (~30 us here): long enough to cover a short critical section or a quick
 * reply, short enough to be negligible next to a real sleep. */
#define CR__SPIN_LOCK_NS  20000
#define CR__SPIN_WAIT_NS  50000

/* ---- identities ------------------------------------------------------------ */
/* This thread's kernel id (cached; reset in a forked child). */
int cr__tid(void);

/* A process identity: pid in the high 32 bits, the low 32 bits of its start
 * time (clock ticks since boot, /proc/PID/stat field 22) in the low ones,
 * so that a recycled pid does not pass for the old process. Never 0. */
uint64_t cr__self_id(void);
/* 1 while the process `id` names is running, 0 once it has ended (gone,
 * a zombie, or its pid now belongs to another process). */
int cr__id_alive(uint64_t id);
/* 1 while process pid runs, 0 once it is gone or a zombie (no check of
 * its start time: for pids recorded by a process that is being waited on). */
int cr__pid_alive(int pid);
#define CR__ID_PID(id) ((int)((id) >> 32))

/* ---- the robust mutex at the heart of Lock, RLock and Barrier -----------
 * A process-shared robust pthread mutex: the kernel's robust-futex list
 * marks it FUTEX_OWNER_DIED and wakes a waiter the moment its owner dies.
 * We acquire with pthread_mutex_trylock (which does the robust-list
 * bookkeeping) and block ourselves on its futex word, so that the wait has
 * a CLOCK_MONOTONIC deadline and SIGINT can interrupt it. */
void cr__mutex_init(pthread_mutex_t *m);
/* timeout as everywhere (< 0 forever). 0, CR_EOWNERDEAD (acquired; the
 * mutex is already made consistent), CR_ETIMEDOUT, CR_EINTR (only if
 * `interruptible`), or -errno; not acquired on failure. */
int cr__mutex_lock(pthread_mutex_t *m, double timeout, int interruptible);
/* 0 or -EPERM when the caller does not own it. */
int cr__mutex_unlock(pthread_mutex_t *m);
/* Owner's tid, 0 when free. */
int cr__mutex_owner(pthread_mutex_t *m);

typedef struct {
  cr_obj_t hdr;
  pthread_mutex_t m;
} cr__lock_t;

typedef struct {
  cr_obj_t hdr;
  pthread_mutex_t m;
  uint32_t depth; /* touched only by the owner */
  uint32_t pad;
} cr__rlock_t;

/* Destructors of the kinds that own more than their block. */
void cr__cond_destroy(cr_arena_t *a, cr_off_t off);
void cr__barrier_destroy(cr_arena_t *a, cr_off_t off);
void cr__shm_destroy(cr_arena_t *a, cr_off_t off);

/* ---- lock-kind dispatch, for Condition and Value/Array --------------------- */
typedef struct {
  uint32_t count; /* RLock recursion depth given up by release_save */
} cr__lock_saved_t;
/* 1 when the calling thread holds the Lock/RLock at off. */
int cr__lock_owned(cr_arena_t *a, cr_off_t off);
/* Releases a held Lock/RLock completely (an RLock of any depth). */
int cr__lock_release_save(cr_arena_t *a, cr_off_t off, cr__lock_saved_t *s);
/* Reacquires it and restores the depth. CR_EOWNERDEAD: reacquired, but a
 * holder died meanwhile. */
int cr__lock_acquire_restore(cr_arena_t *a, cr_off_t off, const cr__lock_saved_t *s,
                             int interruptible);

#endif
