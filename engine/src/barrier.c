/* corral engine: Barrier (see corral/sync.h).
 *
 * A robust internal mutex guards the round's count. Rounds are numbered by
 * `gen`, the futex word that waiters sleep on; when a round ends its outcome
 * (passed or broken) is written in a small ring indexed by round number
 * before `gen` moves on, so a waiter that wakes late still learns how its
 * own round ended even if later rounds have begun. The action runs in the
 * last party, with the mutex held, before the round is released: nobody can
 * return from a round before its action has finished. */
#define _GNU_SOURCE
#include "corral/sync.h"
#include "corral/engine.h"
#include "corral/errors.h"
#include "sync_int.h"

#include <limits.h>
#include <string.h>

#define RING 64
enum { ROUND_PENDING = 0, ROUND_PASSED = 1, ROUND_BROKEN = 2 };

typedef struct {
  cr_obj_t hdr;
  pthread_mutex_t m;
  _Atomic uint32_t gen;
  _Atomic uint32_t count;   /* arrived in this round (under m) */
  _Atomic uint32_t broken;
  uint32_t parties;
  double timeout;
  cr_off_t blob;            /* attached bytes */
  uint64_t blob_len;
  _Atomic uint8_t outcome[RING];
} barrier_t;

static barrier_t *barrier_at(cr_arena_t *a, cr_off_t off) { return cr_arena_ptr(a, off); }

int cr_barrier_new(cr_arena_t *a, int parties, double default_timeout, cr_off_t *off) {
  if (parties < 1) return CR_EINVAL;
  int rc = cr_obj_new(a, CR_OBJ_BARRIER, sizeof(barrier_t), off);
  if (rc < 0) return rc;
  barrier_t *b = barrier_at(a, *off);
  cr__mutex_init(&b->m);
  b->parties = (uint32_t)parties;
  b->timeout = default_timeout < 0 ? -1 : default_timeout;
  return 0;
}

void cr__barrier_destroy(cr_arena_t *a, cr_off_t off) {
  barrier_t *b = barrier_at(a, off);
  cr_arena_free(a, b->blob);
  b->blob = 0;
}

/* Ends round `gen` with `outcome` and wakes its waiters (mutex held). */
static void end_round(barrier_t *b, int outcome) {
  uint32_t g = atomic_load(&b->gen);
  atomic_store(&b->outcome[g % RING], (uint8_t)outcome);
  atomic_store(&b->outcome[(g + 1) % RING], ROUND_PENDING);
  atomic_store(&b->count, 0);
  atomic_store(&b->gen, g + 1);
  cr__futex_wake(&b->gen, INT_MAX);
}

static void break_locked(barrier_t *b) {
  atomic_store(&b->broken, 1);
  if (atomic_load(&b->count) > 0) end_round(b, ROUND_BROKEN);
}

/* Takes the mutex; a party that died inside it breaks the barrier. */
static void lock_state(barrier_t *b) {
  if (cr__mutex_lock(&b->m, -1, 0) == CR_EOWNERDEAD) break_locked(b);
}

int cr_barrier_wait(cr_arena_t *a, cr_off_t off, double timeout, int *index,
                    cr_barrier_action_fn action, void *arg) {
  barrier_t *b = barrier_at(a, off);
  lock_state(b);
  if (atomic_load(&b->broken)) {
    cr__mutex_unlock(&b->m);
    return CR_EBROKEN;
  }
  uint32_t g = atomic_load(&b->gen);
  uint32_t idx = atomic_fetch_add(&b->count, 1);
  if (idx + 1 == b->parties) {
    if (action && action(arg) != 0) {
      break_locked(b);
      cr__mutex_unlock(&b->m);
      return CR_EBROKEN;
    }
    end_round(b, ROUND_PASSED);
    cr__mutex_unlock(&b->m);
    *index = (int)idx;
    return 0;
  }
  cr__mutex_unlock(&b->m);

  int why = 0;
  if (timeout == 0 || !cr__spin_while(&b->gen, g, &(cr__spin_t){0})) {
    cr__deadline_t d;
    cr__deadline_set(&d, timeout);
    cr_intr_begin();
    while (atomic_load(&b->gen) == g) {
      int r = cr__futex_wait(&b->gen, g, &d);
      if (r == CR_ETIMEDOUT || r == CR_EINTR) why = r;
      if (why) {
        lock_state(b);
        if (atomic_load(&b->gen) == g) break_locked(b);
        cr__mutex_unlock(&b->m);
        break;
      }
    }
    cr_intr_end();
  }
  if (atomic_load(&b->outcome[g % RING]) == ROUND_PASSED) {
    if (why == CR_EINTR) cr_intr_pass(); /* the last party came first */
    *index = (int)idx;
    return 0;
  }
  return why == CR_EINTR ? CR_EINTR : CR_EBROKEN;
}

int cr_barrier_reset(cr_arena_t *a, cr_off_t off) {
  barrier_t *b = barrier_at(a, off);
  lock_state(b);
  if (atomic_load(&b->count) > 0) end_round(b, ROUND_BROKEN);
  atomic_store(&b->broken, 0);
  cr__mutex_unlock(&b->m);
  return 0;
}

int cr_barrier_abort(cr_arena_t *a, cr_off_t off) {
  barrier_t *b = barrier_at(a, off);
  lock_state(b);
  break_locked(b);
  cr__mutex_unlock(&b->m);
  return 0;
}

int cr_barrier_parties(cr_arena_t *a, cr_off_t off) { return (int)barrier_at(a, off)->parties; }

int cr_barrier_n_waiting(cr_arena_t *a, cr_off_t off) {
  barrier_t *b = barrier_at(a, off);
  return atomic_load(&b->broken) ? 0 : (int)atomic_load(&b->count);
}

int cr_barrier_broken(cr_arena_t *a, cr_off_t off) { return atomic_load(&barrier_at(a, off)->broken) != 0; }

double cr_barrier_timeout(cr_arena_t *a, cr_off_t off) { return barrier_at(a, off)->timeout; }

int cr_barrier_attach(cr_arena_t *a, cr_off_t off, const void *p, size_t len) {
  barrier_t *b = barrier_at(a, off);
  cr_off_t blob = 0;
  if (len) {
    int rc = cr_arena_alloc(a, len, &blob);
    if (rc < 0) return rc;
    memcpy(cr_arena_ptr(a, blob), p, len);
  }
  lock_state(b);
  cr_off_t old = b->blob;
  b->blob = blob;
  b->blob_len = len;
  cr__mutex_unlock(&b->m);
  cr_arena_free(a, old);
  return 0;
}

const void *cr_barrier_attached(cr_arena_t *a, cr_off_t off, size_t *len) {
  barrier_t *b = barrier_at(a, off);
  *len = b->blob ? (size_t)b->blob_len : 0;
  return b->blob ? cr_arena_ptr(a, b->blob) : NULL;
}
