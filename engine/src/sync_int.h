/* corral engine: internals shared by the synchronisation primitives
 * (lock.c, rlock.c, sem.c, event.c, cond.c, barrier.c, shm.c), the managed
 * objects and the channels (queue.c, pipe.c): this thread's id and process
 * identities that survive pid reuse (ident.c), the robust mutex (lock.c)
 * and dispatch over the lock kinds. How they wait is wait_int.h. */
#ifndef CORRAL_SYNC_INT_H
#define CORRAL_SYNC_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "corral/arena.h"
#include "wait_int.h"

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
