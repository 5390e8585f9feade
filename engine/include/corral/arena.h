/* corral engine: the shared arena.
 *
 * One arena per engine: a memfd mapped MAP_SHARED, created before the first
 * child starts and mapped by every process of the engine (forked children
 * inherit the mapping, spawned children inherit the fd and map it again, at
 * whatever address). It is sized generously and sparse: untouched pages cost
 * nothing. Everything that processes share lives in it and is addressed by
 * offset (cr_off_t), never by pointer. The arena dies with the last process
 * that maps it, so nothing is ever left in /dev/shm.
 *
 * Allocation is a buddy allocator under a process-shared robust mutex.
 * Exhaustion returns CR_ENOMEM, never crashes. */
#ifndef CORRAL_ARENA_H
#define CORRAL_ARENA_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t cr_off_t;            /* 0 is the null offset */
typedef struct cr_arena_s cr_arena_t; /* this process's view of the arena */

#define CR_ARENA_DEFAULT_SIZE ((size_t)4 << 30) /* 4 GiB of address space */
#define CR_ARENA_MIN_SIZE     ((size_t)1 << 20)

/* Creates a new arena of at least `size` bytes (rounded up to a power of
 * two; 0 means CR_ARENA_DEFAULT_SIZE). On failure *out is untouched. */
int cr_arena_create(cr_arena_t **out, size_t size);

/* Maps the arena behind an inherited fd (a spawned child). Checks the
 * header; returns CR_ECORRUPT when the fd does not hold an arena. */
int cr_arena_attach(cr_arena_t **out, int fd);

/* Unmaps and closes this process's view. The shared memory itself lives on
 * while any other process maps it. */
void cr_arena_close(cr_arena_t *a);

/* The memfd behind the arena (to hand to a spawned child). */
int cr_arena_fd(const cr_arena_t *a);

/* Allocates `size` bytes, 16-byte aligned, zero-filled. Returns 0 and sets
 * *off, or CR_ENOMEM (nothing allocated) / CR_EINVAL for size 0. *off is
 * written while the allocator still holds the block as in flight, so a
 * caller that passes the shared-memory word where it records the block
 * loses nothing to a kill: killed before the store, the allocation is
 * undone by whoever takes the allocator over; after it, the block is
 * recorded. */
int cr_arena_alloc(cr_arena_t *a, size_t size, cr_off_t *off);

/* Frees a block from cr_arena_alloc. Freeing 0 does nothing. Large blocks
 * give their pages back to the system. */
void cr_arena_free(cr_arena_t *a, cr_off_t off);

/* Frees the block that the word *rec in the arena records, and clears
 * that record, as one step for a kill: a process killed at any point
 * leaves either the block allocated and *rec naming it (whoever takes the
 * record over frees it), or the block free and *rec 0 (whoever takes the
 * allocator over finishes the free). *rec 0: nothing. A record whose owner
 * died is to be read only after cr_arena_settle. */
void cr_arena_free_rec(cr_arena_t *a, cr_off_t *rec);

/* Settles the operation of a process that died inside the allocator, if
 * any: afterwards every record the allocator was filling or clearing (see
 * cr_arena_alloc, cr_arena_free_rec) says where its block is. */
void cr_arena_settle(cr_arena_t *a);

/* Usable size of an allocated block (>= the size asked for). */
size_t cr_arena_block_size(cr_arena_t *a, cr_off_t off);

/* Pointer for an offset in this process, or NULL for 0. */
void *cr_arena_ptr(const cr_arena_t *a, cr_off_t off);
/* Offset of a pointer into the arena. */
cr_off_t cr_arena_off(const cr_arena_t *a, const void *p);

/* True when [off, off+len) lies inside the arena's heap. */
int cr_arena_contains(const cr_arena_t *a, cr_off_t off, size_t len);

/* Calls fn(ud, off, size) for every allocated block, in address order,
 * under the allocator's lock (fn must not allocate or free). For tools and
 * tests that look for what is left allocated. */
typedef void (*cr_arena_block_fn)(void *ud, cr_off_t off, size_t size);
void cr_arena_each_block(cr_arena_t *a, cr_arena_block_fn fn, void *ud);

typedef struct {
  size_t size;      /* heap bytes managed */
  size_t in_use;    /* bytes in allocated blocks */
  size_t blocks;    /* allocated blocks */
  size_t objects;   /* shared objects alive (cr_obj_new, not yet freed) */
} cr_arena_stats_t;
void cr_arena_stats(cr_arena_t *a, cr_arena_stats_t *st);

/* Well-known offsets that every process of the engine finds in the arena's
 * header, each an atomic word that starts as 0: parts of the engine keep
 * their shared roots there (CR_ARENA_ROOT_*). NULL for an unknown slot. */
#define CR_ARENA_ROOTS        4
#define CR_ARENA_ROOT_PROCS   0 /* the process table of refs.c */
_Atomic uint64_t *cr_arena_root(cr_arena_t *a, unsigned which);

/* ---- shared objects ---------------------------------------------------
 * Every object that a handle can name (a Queue, a Lock, a Value...) begins
 * with this header, so that an offset received in a message can be checked
 * before it is used, and so that the object lives while any handle to it
 * lives in any process. */
#define CR_OBJ_KIND_MAP(XX)  \
  XX(LOCK,      "Lock")        \
  XX(RLOCK,     "RLock")       \
  XX(SEMAPHORE, "Semaphore")   \
  XX(EVENT,     "Event")       \
  XX(CONDITION, "Condition")   \
  XX(BARRIER,   "Barrier")     \
  XX(VALUE,     "Value")       \
  XX(ARRAY,     "Array")       \
  XX(QUEUE,     "Queue")       \
  XX(PIPE,      "Pipe")        \
  XX(MANAGED,   "Managed")     \
  CR_OBJ_TEST_KIND(XX)

/* The test object (a testing build only) comes last, so that every other
 * kind has the same number in every build. */
#ifdef CORRAL_TESTING
#define CR_OBJ_TEST_KIND(XX) XX(TEST, "TestObject")
#else
#define CR_OBJ_TEST_KIND(XX)
#endif

typedef enum {
  CR_OBJ_NONE = 0,
#define XX(name, tname) CR_OBJ_##name,
  CR_OBJ_KIND_MAP(XX)
#undef XX
  CR_OBJ__MAX
} cr_obj_kind_t;

typedef struct {
  uint32_t magic;   /* CR_OBJ_MAGIC while alive */
  uint32_t kind;    /* cr_obj_kind_t */
  uint32_t refs;    /* handles alive in any process (atomic) */
  uint32_t flags;   /* kind-specific */
} cr_obj_t;

#define CR_OBJ_MAGIC 0x436f624au

/* Allocates an object of `size` bytes (header included), kind set, one
 * reference held by the caller. */
int cr_obj_new(cr_arena_t *a, cr_obj_kind_t kind, size_t size, cr_off_t *off);
/* Checks that `off` names a live object of `kind`: 0, or CR_EINVAL. */
int cr_obj_check(cr_arena_t *a, cr_off_t off, cr_obj_kind_t kind);
void cr_obj_retain(cr_arena_t *a, cr_off_t off);
/* Called with the last reference, before the object's block is freed, to
 * free whatever else the object owns in the arena. */
typedef void (*cr_obj_destroy_fn)(cr_arena_t *a, cr_off_t off);
/* Drops a reference. With the last one, calls destroy (if not NULL), frees
 * the block and returns 1; otherwise returns 0. */
int cr_obj_release(cr_arena_t *a, cr_off_t off, cr_obj_destroy_fn destroy);
const char *cr_obj_kind_name(cr_obj_kind_t kind);

#endif
