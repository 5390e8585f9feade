/* corral engine: shared Values and Arrays.
 *
 * A Value is an Array of one item. Items are C scalars named by Python's
 * typecodes: b B h H i I l L q Q (integers of 8, 16, 32 and 64 bits, signed
 * lower case, unsigned upper case; l/L are 64-bit as C's long here), f d
 * (float, double: 'f' stores single precision), c (one byte, 0..255). The
 * storage is zero-filled at creation. Each item is read and written
 * atomically (no torn reads), with relaxed ordering: use the lock for
 * compound updates, or cr_shm_add / cr_shm_cas.
 *
 * Integer range: storing a value outside the typecode's range fails with
 * CR_EOVERFLOW and leaves the item unchanged (nothing wraps silently). The
 * unsigned 64-bit codes (L, Q) hold 0..INT64_MAX, so every item reads back
 * as an int64_t exactly. cr_shm_add fails the same way (unchanged) when the
 * result would leave the range.
 *
 * The optional lock is a Lock or RLock object (retained for the storage's
 * life) that the bindings hand out with get_lock(); the storage itself
 * never takes it. */
#ifndef CORRAL_SHM_H
#define CORRAL_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "corral/arena.h"

/* Item size in bytes of a typecode, or CR_EINVAL for an unknown one. */
int cr_shm_itemsize(int typecode);
/* 1 for the integer typecodes (c included), 0 for f and d. */
int cr_shm_is_integer(int typecode);
/* Range of an integer typecode. */
void cr_shm_range(int typecode, int64_t *min, int64_t *max);

/* Creates a Value (kind CR_OBJ_VALUE, n must be 1) or an Array (CR_OBJ_ARRAY)
 * of n zeroed items. lock_off: 0 for none, else a Lock/RLock to attach
 * (retained). CR_EINVAL (bad typecode, kind, lock), CR_ENOMEM. */
int cr_shm_new(cr_arena_t *a, int kind, int typecode, size_t n, cr_off_t lock_off, cr_off_t *off);
int cr_shm_typecode(cr_arena_t *a, cr_off_t off);
size_t cr_shm_len(cr_arena_t *a, cr_off_t off);
void *cr_shm_data(cr_arena_t *a, cr_off_t off);
/* The attached lock, or 0. */
cr_off_t cr_shm_lock(cr_arena_t *a, cr_off_t off);

/* Item i (0-based; CR_EINVAL past the end or for the wrong kind of item). */
int cr_shm_get_int(cr_arena_t *a, cr_off_t off, size_t i, int64_t *out);
int cr_shm_set_int(cr_arena_t *a, cr_off_t off, size_t i, int64_t v);
int cr_shm_get_float(cr_arena_t *a, cr_off_t off, size_t i, double *out);
int cr_shm_set_float(cr_arena_t *a, cr_off_t off, size_t i, double v);
/* Atomically adds delta to an integer item and sets *result to the new
 * value. CR_EOVERFLOW (unchanged) when it would leave the range. */
int cr_shm_add(cr_arena_t *a, cr_off_t off, size_t i, int64_t delta, int64_t *result);
/* Atomically replaces an integer item equal to `expected` by `desired`:
 * 1 when replaced, 0 when the item held something else, CR_EOVERFLOW when
 * desired is out of range. */
int cr_shm_cas(cr_arena_t *a, cr_off_t off, size_t i, int64_t expected, int64_t desired);

#endif
