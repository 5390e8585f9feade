/* corral engine: the references each process holds.
 *
 * A shared object counts its references (cr_obj_t.refs) and is freed with
 * the last. A reference is held by a process (one per handle it has), by a
 * message (a handle inside encoded bytes: in a queue, a pipe, a Manager's
 * storage, a spawned child's arguments), or by another object (a Condition
 * holds its Lock, a Value its lock).
 *
 * What processes hold is written down in the arena, one ledger per process
 * ((object, count) pairs) listed in one process table. So when a process
 * ends, however it ends (exit, error, SIGKILL), the process that reaps it
 * gives its references back: the engine does it when it notices a child's
 * exit. A forked child inherits its parent's handles: cr_proc_fork copies
 * the parent's ledger for it and takes those references before the fork. A
 * spawned child starts with an empty ledger and fills it as it decodes.
 *
 * A pipe end's handles are also registered with the pipe as open in their
 * process (cr_pipe_hold); this module does that too, so one call covers
 * every kind.
 *
 * Order: a reference is taken before it is recorded, and unrecorded before
 * it is dropped, so a process killed between the two steps leaks that one
 * reference (the object lives on) and never frees an object another
 * process still uses. A process that outlives its reaper (its parent died
 * first) is cleaned up only when another process finds its table slot dead
 * while looking for a free one. */
#ifndef CORRAL_REFS_H
#define CORRAL_REFS_H

#include <stddef.h>

#include "corral/engine.h"

#define CR_REFS_MAX_PROCS 4096 /* processes of one engine alive at once */

/* Drops a reference that no ledger records (a message's, an object's on
 * another object), with the destroy of the object's kind. Returns 1 when
 * that freed the object. */
int cr_obj_drop(cr_arena_t *a, cr_off_t off);

/* Records in this process's ledger one reference on `off` that the caller
 * already holds (from cr_obj_new, cr_obj_retain, or a message it decoded);
 * for a pipe end, also registers one open handle of it here. Returns 0, or
 * CR_ENOMEM when the ledger cannot grow: nothing recorded, and the caller
 * still owns the reference. */
int cr_refs_take(cr_engine_t *e, cr_off_t off);

/* Unregisters (pipe end) and unrecords one reference of this process on
 * `off`, then drops it (cr_obj_drop). */
void cr_refs_drop(cr_engine_t *e, cr_off_t off);

/* References this process's ledger records, over all objects. */
size_t cr_refs_count(cr_engine_t *e);

/* A message can name objects (handles inside it hold references); only
 * the bindings can read one. They set this hook, and the engine calls it
 * with the bytes of every message it discards undelivered (a queue freed
 * with messages in it), so that those references are given back. It must
 * not block. One hook per process; NULL (the default) leaks them. */
typedef void (*cr_msg_drop_fn)(cr_arena_t *a, const void *data, size_t len);
void cr_refs_on_message_drop(cr_msg_drop_fn fn);
/* Calls the hook for one discarded message. */
void cr_refs_message_dropped(cr_arena_t *a, const void *data, size_t len);

/* A handoff: a message for a process that has not started yet (a spawned
 * child's Process, with the references its handles hold). The parent makes
 * it (cr_handoff_new) and passes its offset to the child, which claims it
 * (cr_handoff_take), decodes it adopting the message's references (each
 * recorded in its ledger in one store), then says so and frees the bytes
 * (cr_handoff_done). When the child ends, the parent's engine reclaims it
 * (cr_handoff_reclaim): a message the child never finished with, because
 * it died first, is dropped with its references, and what the child's
 * ledger had adopted of them by then is discarded without a drop
 * (cr_handoff_owns_refs tells the reaper), so that no kill leaks one. */

/* Copies len bytes into a new handoff. 0 or CR_ENOMEM. */
int cr_handoff_new(cr_arena_t *a, const void *data, size_t len, cr_off_t *out);
/* Child: claims the handoff at off and finds its bytes. 0, CR_EINVAL (not
 * a handoff in this arena) or CR_ESTATE (already claimed or reclaimed). */
int cr_handoff_take(cr_arena_t *a, cr_off_t off, const void **data, size_t *len);
/* Child, once its ledger has adopted the message's references (or its
 * decode failed: the references of the handles it had not reached are
 * then lost): frees the bytes (the handoff itself stays, for the parent to
 * reclaim). */
void cr_handoff_done(cr_arena_t *a, cr_off_t off);
/* 1 while the message still owns its references (the child has not said
 * done): its ledger then holds nothing but references adopted from it. */
int cr_handoff_owns_refs(cr_arena_t *a, cr_off_t off);
/* Parent, once the child has ended (or never started): frees the handoff,
 * first dropping the message if the child never claimed it. */
void cr_handoff_reclaim(cr_arena_t *a, cr_off_t off);

#endif
