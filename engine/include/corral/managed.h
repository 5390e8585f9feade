/* corral engine: managed objects, the state behind Manager: shared lists,
 * dicts and namespaces that any process of the engine can change.
 *
 * Where the state lives. Python's Manager keeps the objects in a server
 * process and every operation is a round trip over a socket. Here the state
 * lives in the shared arena and each process operates on it directly under
 * a robust process-shared lock: no server to start, no round trip (an
 * operation costs a lock, a copy and an unlock, which is what makes it many
 * times faster than a socket exchange), and the state outlives any client
 * that crashes by construction, because there is no process whose death
 * takes it away. The engine stores raw bytes (the bindings put codec-encoded
 * values in them) and never looks inside.
 *
 * Objects (all kind CR_OBJ_MANAGED, told apart by cr_managed_type):
 *   Manager    a registry of the objects made through it, and a "shut down"
 *              flag. The registry holds one reference on each object.
 *   List       an array of elements, each element one arena block holding
 *              its bytes.
 *   Dict       an insertion-ordered hash table (a dense array of entries in
 *              insertion order plus an index of 32-bit slots, as Python's
 *              dict): each entry is one block holding the key's hash, the
 *              key bytes and the value bytes. Keys are compared by bytes, so
 *              the caller must encode equal keys to equal bytes.
 *   Namespace  a Dict; only the bindings treat it differently.
 *
 * Locking. Each List/Dict has its own robust mutex. Every container
 * function below except cr_managed_new/close/release must be called between
 * cr_managed_lock and cr_managed_unlock, which lets the bindings compose
 * several steps into one atomic operation (extend, update, remove, sort).
 * Waiting for the lock is a Lock's (sync.h): a bounded spin, then a futex
 * sleep that SIGINT interrupts.
 * Locks are never nested except Manager -> container, in shutdown.
 *
 * Crash consistency (a process SIGKILLed at any instruction inside an
 * operation). Every mutation builds what it needs off to the side (new
 * element blocks, and for structural changes a whole new array or table:
 * copy-on-write) and makes it visible with one final store: the list's
 * length, the dict's count of used entries, one entry's offset, or the
 * offset of the new array/table. Blocks whose fate depends on whether that
 * store happened (the new blocks, and the old ones that it replaces) are
 * written to a small journal in the object before the store and removed
 * from it after. The next process that takes the lock is told by the kernel
 * that the owner died (the robust mutex's OwnerDied) and recovers before it
 * does anything else: each journaled block that the published state does
 * not reach is freed (its bytes first handed to the drop hook), the journal
 * is cleared, and what is derived from the published state (a dict's index
 * and live count) is rebuilt from it. So the structure seen afterwards is
 * exactly the one before or exactly the one after the interrupted step; an
 * operation of several steps (extend, update) keeps the steps already done.
 * What a death can cost: a block allocated but not yet journaled (the
 * window between the allocator returning and one store) leaks, as does a
 * block unjournaled but not yet freed; never a double free, never a torn
 * structure.
 *
 * Elements that name shared objects. The bindings encode values that hold
 * handles with one reference per handle. Whenever the engine frees an
 * element (overwritten, removed, recovered, closed, destroyed) it first
 * passes the element's value bytes to the drop hook (cr_managed_on_drop),
 * which must release those references later, outside any lock. Reading an
 * element hands its bytes to a sink while the lock is held, so the sink may
 * take references of its own before the element can go away.
 *
 * Shutdown (cr_manager_shutdown, from any process): sets the flag, then
 * for each registered object: a List/Dict is closed (its contents freed;
 * every later lock gives CR_ECLOSED, in every process, while the handles
 * that still name it keep its header alive), a Queue is closed
 * (cr_queue_close), and the registry's reference is dropped. A shutdown
 * killed half way is finished by the next call. Without a shutdown, objects
 * live while any reference does; the Manager's last reference going away
 * drops the registry's references without closing anything.
 */
#ifndef CORRAL_MANAGED_H
#define CORRAL_MANAGED_H

#include <stddef.h>
#include <stdint.h>

#include "corral/arena.h"

/* The engine's names of its types; the bindings give them their own
 * (ListProxy...). */
#define CR_MANAGED_TYPE_MAP(XX)  \
  XX(MANAGER,   "Manager")       \
  XX(LIST,      "List")          \
  XX(DICT,      "Dict")          \
  XX(NAMESPACE, "Namespace")

typedef enum {
  CR_MANAGED_NONE = 0,
#define XX(name, tname) CR_MANAGED_##name,
  CR_MANAGED_TYPE_MAP(XX)
#undef XX
  CR_MANAGED__MAX
} cr_managed_type_t;

/* Receives an element's bytes, valid only during the call (the lock is
 * held). A negative return is passed on by the calling function. */
typedef int (*cr_managed_sink_fn)(void *ud, const void *data, size_t len);

/* Receives the value bytes of each element the engine is about to free.
 * Runs with locks held: it must not block nor call into this file. One
 * hook per process; NULL removes it. */
typedef void (*cr_managed_drop_fn)(const void *data, size_t len);
void cr_managed_on_drop(cr_managed_drop_fn fn);

/* ---- any managed object ---------------------------------------------------- */

/* The type of the managed object at off (CR_MANAGED_NONE when off names no
 * live managed object). */
int cr_managed_type(cr_arena_t *a, cr_off_t off);
const char *cr_managed_type_name(int type);
/* The cr_obj_destroy_fn of managed objects: frees a container's contents
 * (through the drop hook) or drops a Manager's registry references. */
void cr_managed_destroy(cr_arena_t *a, cr_off_t off);
/* Drops a reference (cr_obj_release with cr_managed_destroy); 1 when it
 * was the last. */
int cr_managed_release(cr_arena_t *a, cr_off_t off);

/* ---- Manager -------------------------------------------------------------- */

/* Creates a Manager (one reference for the caller). CR_ENOMEM. */
int cr_manager_new(cr_arena_t *a, cr_off_t *off);
/* Registers the object at obj (a List/Dict, Queue, Lock, RLock,
 * Semaphore, Event, Condition, Barrier, Value or Array), taking a reference
 * for the registry. CR_ECLOSED when the manager is shut down, CR_EINVAL for
 * another kind, CR_ENOMEM, CR_EINTR; nothing registered on failure. */
int cr_manager_track(cr_arena_t *a, cr_off_t mgr, cr_off_t obj);
/* Shuts the manager down (see above). Calling it again finishes an
 * interrupted shutdown and otherwise does nothing. 0, or CR_EINTR when
 * SIGINT interrupts a wait for a lock (call again to finish). */
int cr_manager_shutdown(cr_arena_t *a, cr_off_t mgr);
int cr_manager_is_shutdown(cr_arena_t *a, cr_off_t mgr);
/* Objects in the registry now. */
size_t cr_manager_tracked(cr_arena_t *a, cr_off_t mgr);

/* ---- containers (List, Dict, Namespace) ------------------------------------- */

/* Creates an empty container of `type` (LIST, DICT or NAMESPACE), one
 * reference for the caller; registered with the manager at mgr unless mgr
 * is 0. CR_EINVAL (type), CR_ECLOSED (manager shut down), CR_ENOMEM;
 * nothing left allocated on failure. */
int cr_managed_new(cr_arena_t *a, cr_off_t mgr, int type, cr_off_t *off);
/* Takes the container's lock, first recovering from a holder that died
 * (see above). 0: held. CR_ECLOSED: shut down (not held). CR_ESTATE: this
 * thread holds it already (a comparator or finalizer calling back in; not
 * held again). CR_EINTR: SIGINT while waiting (not held). */
int cr_managed_lock(cr_arena_t *a, cr_off_t off);
void cr_managed_unlock(cr_arena_t *a, cr_off_t off);
/* Closes the container for every process and frees its contents; later
 * locks give CR_ECLOSED. Idempotent. 0 or CR_EINTR (nothing done). */
int cr_managed_close(cr_arena_t *a, cr_off_t off);
int cr_managed_is_closed(cr_arena_t *a, cr_off_t off);
/* How many times a dead holder's operation has been recovered. */
uint32_t cr_managed_recoveries(cr_arena_t *a, cr_off_t off);

/* ---- List (lock held; indices 0-based) ------------------------------------- */

size_t cr_list_len(cr_arena_t *a, cr_off_t off);
/* Gives element i to sink. CR_EINVAL when i >= len. */
int cr_list_get(cr_arena_t *a, cr_off_t off, size_t i, cr_managed_sink_fn sink, void *ud);
/* Replaces element i. CR_EINVAL (i >= len), CR_ENOMEM; unchanged on failure. */
int cr_list_set(cr_arena_t *a, cr_off_t off, size_t i, const void *data, size_t len);
/* Appends. CR_ENOMEM (unchanged). */
int cr_list_append(cr_arena_t *a, cr_off_t off, const void *data, size_t len);
/* Inserts before element i (i == len appends). CR_EINVAL (i > len),
 * CR_ENOMEM; unchanged on failure. */
int cr_list_insert(cr_arena_t *a, cr_off_t off, size_t i, const void *data, size_t len);
/* Gives element i to sink (if not NULL), then removes it. A negative sink
 * return is passed on and nothing is removed. CR_EINVAL (i >= len),
 * CR_ENOMEM; unchanged on failure. */
int cr_list_pop(cr_arena_t *a, cr_off_t off, size_t i, cr_managed_sink_fn sink, void *ud);
/* Reorders: element k becomes the old element perm[k]. n must be the
 * length and perm a permutation of 0..n-1 (CR_EINVAL otherwise).
 * CR_ENOMEM; unchanged on failure. */
int cr_list_permute(cr_arena_t *a, cr_off_t off, const uint32_t *perm, size_t n);

/* ---- Dict (lock held) ---------------------------------------------------------- */

size_t cr_dict_len(cr_arena_t *a, cr_off_t off);
/* Gives the value of key to sink: 1 found, 0 absent (sink not called). */
int cr_dict_get(cr_arena_t *a, cr_off_t off, const void *key, size_t klen, cr_managed_sink_fn sink,
                void *ud);
/* Sets key to the value bytes: 1 (new key, placed last), 0 (replaced, the
 * key keeps its place), CR_ENOMEM (unchanged). Keys up to 64 KiB
 * (CR_EINVAL beyond). */
int cr_dict_set(cr_arena_t *a, cr_off_t off, const void *key, size_t klen, const void *data,
                size_t len);
/* Gives the value of key to sink (if not NULL), then removes the key: 1
 * removed, 0 absent. A negative sink return is passed on, nothing removed. */
int cr_dict_pop(cr_arena_t *a, cr_off_t off, const void *key, size_t klen, cr_managed_sink_fn sink,
                void *ud);
/* Calls fn for each key in insertion order; stops at, and returns, the
 * first nonzero return; 0 after the last. fn must not change the dict. */
typedef int (*cr_dict_each_fn)(void *ud, const void *key, size_t klen, const void *val, size_t vlen);
int cr_dict_each(cr_arena_t *a, cr_off_t off, cr_dict_each_fn fn, void *ud);

/* ---- test hooks -------------------------------------------------------------------
 * In a testing build (CORRAL_TESTING): after cr_managed_test_park(where),
 * this process's next mutation of any container stops forever at that
 * point, lock held (1: new blocks built and journaled, before the
 * publishing store; 2: just after it, before the journal is cleared and the
 * replaced blocks are freed), after adding one to the container's parked
 * count; so a test can kill it there. */
#define CR_MANAGED_PARK_BEFORE 1
#define CR_MANAGED_PARK_AFTER  2
#ifdef CORRAL_TESTING
void cr_managed_test_park(int where);
uint32_t cr_managed_test_parked(cr_arena_t *a, cr_off_t off);
#endif

#endif
