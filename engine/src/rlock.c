/* corral engine: RLock, a reentrant Lock: the robust mutex of lock.c plus a
 * depth that only the owner touches (see corral/sync.h). Ownership is read
 * from the mutex word itself (the owner's tid), so it is never stale: a
 * dead owner's tid is cleared by the kernel. */
#define _GNU_SOURCE
#include "corral/sync.h"
#include "corral/errors.h"
#include "sync_int.h"

static cr__rlock_t *rlock_at(cr_arena_t *a, cr_off_t off) { return cr_arena_ptr(a, off); }

int cr_rlock_new(cr_arena_t *a, cr_off_t *off) {
  int rc = cr_obj_new(a, CR_OBJ_RLOCK, sizeof(cr__rlock_t), off);
  if (rc < 0) return rc;
  cr__mutex_init(&rlock_at(a, *off)->m);
  return 0;
}

int cr_rlock_acquire(cr_arena_t *a, cr_off_t off, double timeout) {
  cr__rlock_t *r = rlock_at(a, off);
  if (cr__mutex_owner(&r->m) == cr__tid()) {
    if (r->depth == UINT32_MAX) return CR_EOVERFLOW;
    r->depth++;
    return 0;
  }
  int rc = cr__mutex_lock(&r->m, timeout, 1);
  if (rc == 0 || rc == CR_EOWNERDEAD) r->depth = 1;
  return rc;
}

int cr_rlock_release(cr_arena_t *a, cr_off_t off) {
  cr__rlock_t *r = rlock_at(a, off);
  int owner = cr__mutex_owner(&r->m);
  if (owner == 0) return CR_ETOOMANY;
  if (owner != cr__tid()) return CR_ENOTOWNER;
  if (--r->depth > 0) return 0;
  return cr__mutex_unlock(&r->m);
}

int cr_rlock_locked(cr_arena_t *a, cr_off_t off) { return cr__mutex_owner(&rlock_at(a, off)->m) != 0; }

int cr_rlock_depth(cr_arena_t *a, cr_off_t off) {
  cr__rlock_t *r = rlock_at(a, off);
  return cr__mutex_owner(&r->m) == cr__tid() ? (int)r->depth : 0;
}
