/* corral engine: Condition (see corral/sync.h for the design).
 *
 * A table of waiter slots. A slot goes FREE -> WAITING when a waiter takes
 * it (under the Condition's lock), WAITING -> NOTIFIED by notify (under the
 * lock), WAITING -> FREE when its waiter withdraws (timeout, SIGINT) or is
 * found dead, and NOTIFIED -> FREE when its waiter has woken. The two
 * compare-and-swaps out of WAITING decide every race between a notify and a
 * withdrawal. Each waiter sleeps on its own slot's state word, so a notify
 * wakes exactly the waiters it chose. */
#define _GNU_SOURCE
#include "corral/sync.h"
#include "corral/engine.h"
#include "corral/errors.h"
#include "sync_int.h"


enum { SLOT_FREE = 0, SLOT_WAITING = 1, SLOT_NOTIFIED = 2 };

typedef struct {
  _Atomic uint32_t state;
  uint32_t pad;
  _Atomic uint64_t id;   /* the waiter's process identity */
  uint64_t ticket;       /* arrival order, for FIFO notify */
} cslot_t;

typedef struct {
  cr_obj_t hdr;
  cr_off_t lock;         /* Lock or RLock, retained */
  uint64_t next_ticket;  /* under the lock */
  cslot_t slots[CR_COND_WAITERS];
} cond_t;

static cond_t *cond_at(cr_arena_t *a, cr_off_t off) { return cr_arena_ptr(a, off); }

int cr_cond_new(cr_arena_t *a, cr_off_t lock_off, cr_off_t *off) {
  if (cr_obj_check(a, lock_off, CR_OBJ_LOCK) < 0 && cr_obj_check(a, lock_off, CR_OBJ_RLOCK) < 0)
    return CR_EINVAL;
  int rc = cr_obj_new(a, CR_OBJ_CONDITION, sizeof(cond_t), off);
  if (rc < 0) return rc;
  cr_obj_retain(a, lock_off);
  cond_at(a, *off)->lock = lock_off;
  return 0;
}

void cr__cond_destroy(cr_arena_t *a, cr_off_t off) {
  cond_t *c = cond_at(a, off);
  if (c->lock) cr_obj_release(a, c->lock, cr_sync_destroy);
  c->lock = 0;
}

cr_off_t cr_cond_lock(cr_arena_t *a, cr_off_t off) { return cond_at(a, off)->lock; }

/* Frees the slots of waiters whose process ended; returns how many. */
static int reclaim_dead(cond_t *c) {
  int n = 0;
  for (int i = 0; i < CR_COND_WAITERS; i++) {
    cslot_t *s = &c->slots[i];
    uint32_t st = atomic_load(&s->state);
    if (st == SLOT_FREE || cr__id_alive(atomic_load(&s->id))) continue;
    if (atomic_compare_exchange_strong(&s->state, &st, SLOT_FREE)) n++;
  }
  return n;
}

static cslot_t *take_slot(cond_t *c) {
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < CR_COND_WAITERS; i++)
      if (atomic_load(&c->slots[i].state) == SLOT_FREE) return &c->slots[i];
    if (!reclaim_dead(c)) break;
  }
  return NULL;
}

int cr_cond_wait(cr_arena_t *a, cr_off_t off, double timeout) {
  cond_t *c = cond_at(a, off);
  if (!cr__lock_owned(a, c->lock)) return CR_ENOTOWNER;
  cslot_t *s = take_slot(c);
  if (!s) return CR_EFULL;
  atomic_store(&s->id, cr__self_id());
  s->ticket = c->next_ticket++;
  atomic_store(&s->state, SLOT_WAITING);
  cr__lock_saved_t saved;
  int rc = cr__lock_release_save(a, c->lock, &saved);
  if (rc < 0) { /* cannot happen: we own it */
    atomic_store(&s->state, SLOT_FREE);
    return rc;
  }
  int notified = 0;
  if (timeout != 0 && cr__spin_while(&s->state, SLOT_WAITING, &(cr__spin_t){0})) notified = 1;
  if (!notified) {
    cr__deadline_t d;
    cr__deadline_set(&d, timeout);
    cr_intr_begin();
    for (;;) {
      if (atomic_load(&s->state) != SLOT_WAITING) {
        notified = 1;
        break;
      }
      int r = cr__futex_wait(&s->state, SLOT_WAITING, &d);
      if (r == CR_ETIMEDOUT || r == CR_EINTR) {
        uint32_t st = SLOT_WAITING;
        if (atomic_compare_exchange_strong(&s->state, &st, SLOT_FREE)) rc = r;
        else {
          notified = 1; /* a notify won the race: it counted us */
          if (r == CR_EINTR) cr_intr_pass();
        }
        break;
      }
    }
    cr_intr_end();
  }
  if (notified) {
    rc = 0;
    atomic_store(&s->state, SLOT_FREE);
  }
  int rr = cr__lock_acquire_restore(a, c->lock, &saved, 0);
  if (rr == CR_EOWNERDEAD) return rr;
  return rc;
}

int cr_cond_notify(cr_arena_t *a, cr_off_t off, int n) {
  cond_t *c = cond_at(a, off);
  if (!cr__lock_owned(a, c->lock)) return CR_ENOTOWNER;
  int woken = 0;
  while (n < 0 || woken < n) {
    cslot_t *best = NULL;
    for (int i = 0; i < CR_COND_WAITERS; i++) {
      cslot_t *s = &c->slots[i];
      if (atomic_load(&s->state) == SLOT_WAITING && (!best || s->ticket < best->ticket)) best = s;
    }
    if (!best) break;
    uint32_t st = SLOT_WAITING;
    if (!cr__id_alive(atomic_load(&best->id))) {
      atomic_compare_exchange_strong(&best->state, &st, SLOT_FREE);
      continue;
    }
    if (atomic_compare_exchange_strong(&best->state, &st, SLOT_NOTIFIED)) {
      cr__futex_wake(&best->state, 1);
      woken++;
    }
  }
  return woken;
}

int cr_cond_waiters(cr_arena_t *a, cr_off_t off) {
  cond_t *c = cond_at(a, off);
  int n = 0;
  for (int i = 0; i < CR_COND_WAITERS; i++)
    if (atomic_load(&c->slots[i].state) == SLOT_WAITING) n++;
  return n;
}
