/* corral engine: Semaphore and BoundedSemaphore (see corral/sync.h for the
 * design, in particular how the slots of a holder that died come back).
 *
 * The count of free slots is the futex word; `waiters` counts sleepers so
 * that a release only makes a system call when someone sleeps. Holders are
 * recorded in a table of (identity, count) entries claimed by
 * compare-and-swap: an entry's count is changed by its own process, or
 * taken whole (exchange to 0) by whoever finds that process ended. */
#define _GNU_SOURCE
#include "corral/sync.h"
#include "corral/engine.h"
#include "corral/errors.h"
#include "sync_int.h"

#define SEM_BOUNDED 1u
#define SLICE_FIRST 0.05
#define SLICE_MAX   1.0

typedef struct {
  _Atomic uint64_t id; /* cr__self_id of the holder, 0 when free */
  _Atomic uint32_t n;  /* slots it holds */
  uint32_t pad;
} holder_t;

typedef struct {
  cr_obj_t hdr;        /* flags: SEM_BOUNDED */
  _Atomic uint32_t value;
  _Atomic uint32_t waiters;
  uint32_t max;
  uint32_t pad;
  holder_t holders[CR_SEM_HOLDERS];
} csem_t;

static csem_t *sem_at(cr_arena_t *a, cr_off_t off) { return cr_arena_ptr(a, off); }

int cr_sem_new(cr_arena_t *a, long value, int bounded, cr_off_t *off) {
  if (value < 0 || value > CR_SEM_MAX) return CR_EINVAL;
  int rc = cr_obj_new(a, CR_OBJ_SEMAPHORE, sizeof(csem_t), off);
  if (rc < 0) return rc;
  csem_t *s = sem_at(a, *off);
  s->hdr.flags = bounded ? SEM_BOUNDED : 0;
  s->max = bounded ? (uint32_t)value : CR_SEM_MAX;
  atomic_store(&s->value, (uint32_t)value);
  return 0;
}

static int try_take(csem_t *s) {
  uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
  while (v > 0)
    if (atomic_compare_exchange_weak_explicit(&s->value, &v, v - 1, memory_order_acquire,
                                              memory_order_relaxed))
      return 1;
  return 0;
}

/* Records one more slot held by this process (untracked when the table is
 * full). */
static void record_hold(csem_t *s) {
  uint64_t me = cr__self_id();
  unsigned start = (unsigned)(me >> 32) % CR_SEM_HOLDERS;
  for (int pass = 0; pass < 2; pass++) {
    holder_t *free_h = NULL;
    for (unsigned i = 0; i < CR_SEM_HOLDERS; i++) {
      holder_t *h = &s->holders[(start + i) % CR_SEM_HOLDERS];
      uint64_t id = atomic_load_explicit(&h->id, memory_order_relaxed);
      if (id == me) {
        atomic_fetch_add(&h->n, 1);
        return;
      }
      if (id == 0 && !free_h) free_h = h;
    }
    if (!free_h) return;
    uint64_t zero = 0;
    if (atomic_compare_exchange_strong(&free_h->id, &zero, me)) {
      atomic_store(&free_h->n, 1);
      return;
    }
  }
}

/* Takes one slot off this process's record: 1 if it held one, else 0. */
static int drop_hold(csem_t *s) {
  uint64_t me = cr__self_id();
  unsigned start = (unsigned)(me >> 32) % CR_SEM_HOLDERS;
  for (unsigned i = 0; i < CR_SEM_HOLDERS; i++) {
    holder_t *h = &s->holders[(start + i) % CR_SEM_HOLDERS];
    if (atomic_load_explicit(&h->id, memory_order_relaxed) != me) continue;
    uint32_t n = atomic_load(&h->n);
    if (n == 0) return 0;
    if (atomic_fetch_sub(&h->n, 1) == 1) {
      uint64_t id = me;
      atomic_compare_exchange_strong(&h->id, &id, 0);
    }
    return 1;
  }
  return 0;
}

static void undo_drop(csem_t *s) { record_hold(s); }

int cr_sem_recover(cr_arena_t *a, cr_off_t off) {
  csem_t *s = sem_at(a, off);
  uint64_t me = cr__self_id();
  uint32_t total = 0;
  for (unsigned i = 0; i < CR_SEM_HOLDERS; i++) {
    holder_t *h = &s->holders[i];
    uint64_t id = atomic_load(&h->id);
    if (id == 0 || id == me || cr__id_alive(id)) continue;
    uint32_t k = atomic_exchange(&h->n, 0);
    atomic_compare_exchange_strong(&h->id, &id, 0);
    if (k == 0) continue;
    uint32_t v = atomic_load(&s->value), nv;
    do {
      nv = v + k > s->max ? s->max : v + k;
    } while (!atomic_compare_exchange_weak(&s->value, &v, nv));
    total += nv - v;
  }
  if (total && atomic_load(&s->waiters)) cr__futex_wake(&s->value, (int)total);
  return (int)total;
}

int cr_sem_acquire(cr_arena_t *a, cr_off_t off, double timeout) {
  csem_t *s = sem_at(a, off);
  if (try_take(s)) {
    record_hold(s);
    return 0;
  }
  if (timeout == 0) {
    if (cr_sem_recover(a, off) > 0 && try_take(s)) {
      record_hold(s);
      return 0;
    }
    return CR_ETIMEDOUT;
  }
  cr__deadline_t d, sd;
  cr__deadline_set(&d, timeout);
  cr__spin_while(&s->value, 0, &(cr__spin_t){0});
  double slice = SLICE_FIRST;
  int rc, intr_on = 0;
  for (;;) {
    if (try_take(s)) {
      rc = 0;
      break;
    }
    if (cr__deadline_expired(&d)) {
      rc = CR_ETIMEDOUT;
      break;
    }
    if (!intr_on) {
      cr_intr_begin();
      intr_on = 1;
    }
    cr__deadline_min(&sd, &d, slice);
    atomic_fetch_add(&s->waiters, 1);
    int r = cr__futex_wait(&s->value, 0, &sd);
    atomic_fetch_sub(&s->waiters, 1);
    if (r == CR_ETIMEDOUT) {
      /* a slice went by without a wake: is a holder gone? */
      if (!cr__deadline_expired(&d) && cr_sem_recover(a, off) == 0)
        slice = slice * 2 > SLICE_MAX ? SLICE_MAX : slice * 2;
    } else if (r == CR_EINTR) {
      rc = CR_EINTR;
      break;
    }
  }
  if (intr_on) cr_intr_end();
  if (rc == 0) record_hold(s);
  return rc;
}

int cr_sem_release(cr_arena_t *a, cr_off_t off) {
  csem_t *s = sem_at(a, off);
  int held = drop_hold(s);
  uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
  do {
    if (v >= s->max) {
      if (held) undo_drop(s);
      return CR_EOVERFLOW;
    }
  } while (!atomic_compare_exchange_weak_explicit(&s->value, &v, v + 1, memory_order_release,
                                                  memory_order_relaxed));
  if (atomic_load(&s->waiters)) cr__futex_wake(&s->value, 1);
  return 0;
}

int cr_sem_value(cr_arena_t *a, cr_off_t off) { return (int)atomic_load(&sem_at(a, off)->value); }

int cr_sem_is_bounded(cr_arena_t *a, cr_off_t off) {
  return (sem_at(a, off)->hdr.flags & SEM_BOUNDED) != 0;
}
