/* corral engine: handoffs, the messages a spawned child takes at its start
 * (see refs.h). The state word sits in a small block of its own that only
 * the parent frees, after the child has ended: so the child may free the
 * bytes as soon as it has decoded them, and the parent never reads a block
 * that was freed and reused under it.
 *
 * The child adopts the message's references: each handle it decodes
 * records its reference in the child's ledger, in one store. So whichever
 * way the child ends, each reference has one owner: PENDING or TAKEN, the
 * message (the parent drops it at reclaim, and discards what the child's
 * ledger holds by then without dropping it: the same references); DONE,
 * the child's ledger. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "corral/errors.h"
#include "corral/refs.h"

#define HANDOFF_MAGIC UINT32_C(0x484f4646) /* "HOFF" */

enum { PENDING, TAKEN, DONE, RECLAIMED };

typedef struct {
  uint32_t magic;
  _Atomic uint32_t state;
  cr_off_t bytes; /* the message: a block of its own */
  uint64_t len;
} handoff_t;

int cr_handoff_new(cr_arena_t *a, const void *data, size_t len, cr_off_t *out) {
  cr_off_t h, b;
  int rc = cr_arena_alloc(a, sizeof(handoff_t), &h);
  if (rc < 0) return rc;
  if ((rc = cr_arena_alloc(a, len ? len : 1, &b)) < 0) {
    cr_arena_free(a, h);
    return rc;
  }
  memcpy(cr_arena_ptr(a, b), data, len);
  handoff_t *ho = cr_arena_ptr(a, h);
  ho->bytes = b;
  ho->len = len;
  atomic_store(&ho->state, PENDING);
  ho->magic = HANDOFF_MAGIC;
  *out = h;
  return 0;
}

static handoff_t *handoff_at(cr_arena_t *a, cr_off_t off) {
  if (!cr_arena_contains(a, off, sizeof(handoff_t))) return NULL;
  handoff_t *ho = cr_arena_ptr(a, off);
  if (ho->magic != HANDOFF_MAGIC) return NULL;
  if (!cr_arena_contains(a, ho->bytes, ho->len ? ho->len : 1)) return NULL;
  return ho;
}

int cr_handoff_take(cr_arena_t *a, cr_off_t off, const void **data, size_t *len) {
  handoff_t *ho = handoff_at(a, off);
  if (!ho) return CR_EINVAL;
  uint32_t st = PENDING;
  if (!atomic_compare_exchange_strong(&ho->state, &st, TAKEN)) return CR_ESTATE;
  *data = cr_arena_ptr(a, ho->bytes);
  *len = (size_t)ho->len;
  return 0;
}

void cr_handoff_done(cr_arena_t *a, cr_off_t off) {
  handoff_t *ho = handoff_at(a, off);
  uint32_t st = TAKEN;
  if (!ho || !atomic_compare_exchange_strong(&ho->state, &st, DONE)) return;
  cr_arena_free_rec(a, &ho->bytes);
}

int cr_handoff_owns_refs(cr_arena_t *a, cr_off_t off) {
  if (!off || !cr_arena_contains(a, off, sizeof(handoff_t))) return 0;
  handoff_t *ho = cr_arena_ptr(a, off);
  if (ho->magic != HANDOFF_MAGIC) return 0;
  uint32_t st = atomic_load(&ho->state);
  return st == PENDING || st == TAKEN;
}

void cr_handoff_reclaim(cr_arena_t *a, cr_off_t off) {
  if (!off || !cr_arena_contains(a, off, sizeof(handoff_t))) return;
  handoff_t *ho = cr_arena_ptr(a, off);
  if (ho->magic != HANDOFF_MAGIC) return;
  uint32_t st = atomic_load(&ho->state);
  if (st == PENDING || st == TAKEN) { /* the references are still the message's */
    atomic_store(&ho->state, RECLAIMED);
    cr_refs_message_dropped(a, cr_arena_ptr(a, ho->bytes), (size_t)ho->len);
  }
  cr_arena_settle(a); /* the child may have died freeing the bytes */
  cr_arena_free_rec(a, &ho->bytes);
  ho->magic = 0;
  cr_arena_free(a, off);
}
