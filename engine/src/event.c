/* corral engine: Event (see corral/sync.h).
 *
 * One futex word: bit 0 is the flag, the bits above count the sets. A
 * waiter that saw the word clear sleeps while it stays equal; any change
 * means a set happened during the wait, so a set followed at once by a
 * clear still releases every waiter (Python's Event may miss it). */
#define _GNU_SOURCE
#include "corral/sync.h"
#include "corral/engine.h"
#include "corral/errors.h"
#include "sync_int.h"

#include <limits.h>

typedef struct {
  cr_obj_t hdr;
  _Atomic uint32_t word;
  _Atomic uint32_t waiters;
} event_t;

static event_t *event_at(cr_arena_t *a, cr_off_t off) { return cr_arena_ptr(a, off); }

int cr_event_new(cr_arena_t *a, cr_off_t *off) {
  return cr_obj_new(a, CR_OBJ_EVENT, sizeof(event_t), off);
}

void cr_event_set(cr_arena_t *a, cr_off_t off) {
  event_t *e = event_at(a, off);
  uint32_t v = atomic_load(&e->word);
  do {
    if (v & 1) return;
  } while (!atomic_compare_exchange_weak(&e->word, &v, (v + 2) | 1));
  if (atomic_load(&e->waiters)) cr__futex_wake(&e->word, INT_MAX);
}

void cr_event_clear(cr_arena_t *a, cr_off_t off) {
  event_t *e = event_at(a, off);
  uint32_t v = atomic_load(&e->word);
  do {
    if (!(v & 1)) return;
  } while (!atomic_compare_exchange_weak(&e->word, &v, v & ~1u));
}

int cr_event_is_set(cr_arena_t *a, cr_off_t off) {
  return (atomic_load(&event_at(a, off)->word) & 1) != 0;
}

int cr_event_wait(cr_arena_t *a, cr_off_t off, double timeout) {
  event_t *e = event_at(a, off);
  uint32_t v0 = atomic_load(&e->word);
  if (v0 & 1) return 0;
  if (timeout == 0) return CR_ETIMEDOUT;
  if (cr__spin_while(&e->word, v0, &(cr__spin_t){0})) return 0;
  cr__deadline_t d;
  cr__deadline_set(&d, timeout);
  cr_intr_begin();
  int rc;
  for (;;) {
    if (atomic_load(&e->word) != v0) {
      rc = 0;
      break;
    }
    atomic_fetch_add(&e->waiters, 1);
    int r = cr__futex_wait(&e->word, v0, &d);
    atomic_fetch_sub(&e->waiters, 1);
    if (r == CR_ETIMEDOUT) {
      rc = atomic_load(&e->word) != v0 ? 0 : CR_ETIMEDOUT;
      break;
    }
    if (r == CR_EINTR) {
      rc = CR_EINTR;
      break;
    }
  }
  cr_intr_end();
  return rc;
}
