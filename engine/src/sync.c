/* corral engine: what all synchronisation objects share: their destructor
 * (see corral/sync.h). */
#include "corral/sync.h"
#include "sync_int.h"

void cr_sync_destroy(cr_arena_t *a, cr_off_t off) {
  cr_obj_t *o = cr_arena_ptr(a, off);
  switch (o->kind) {
    case CR_OBJ_CONDITION: cr__cond_destroy(a, off); break;
    case CR_OBJ_BARRIER: cr__barrier_destroy(a, off); break;
    case CR_OBJ_VALUE:
    case CR_OBJ_ARRAY: cr__shm_destroy(a, off); break;
    default: break;
  }
}
