/* corral engine: shared Values and Arrays (see corral/shm.h).
 *
 * Items are accessed with the __atomic builtins at their own width, so a
 * reader never sees half of an item another process is writing. */
#define _GNU_SOURCE
#include "corral/shm.h"
#include "corral/errors.h"
#include "corral/sync.h"
#include "sync_int.h"

#include <string.h>

typedef struct {
  cr_obj_t hdr;
  uint32_t typecode;
  uint32_t itemsize;
  uint64_t n;
  cr_off_t lock;
  uint64_t pad;
  /* items follow, 16-byte aligned */
} shm_t;

_Static_assert(sizeof(shm_t) % 16 == 0, "items are 16-byte aligned");

static shm_t *shm_at(cr_arena_t *a, cr_off_t off) { return cr_arena_ptr(a, off); }
static unsigned char *items(shm_t *s) { return (unsigned char *)(s + 1); }

int cr_shm_itemsize(int tc) {
  switch (tc) {
    case 'b': case 'B': case 'c': return 1;
    case 'h': case 'H': return 2;
    case 'i': case 'I': case 'f': return 4;
    case 'l': case 'L': case 'q': case 'Q': case 'd': return 8;
    default: return CR_EINVAL;
  }
}

int cr_shm_is_integer(int tc) { return cr_shm_itemsize(tc) > 0 && tc != 'f' && tc != 'd'; }

void cr_shm_range(int tc, int64_t *min, int64_t *max) {
  switch (tc) {
    case 'b': *min = INT8_MIN; *max = INT8_MAX; break;
    case 'B': case 'c': *min = 0; *max = UINT8_MAX; break;
    case 'h': *min = INT16_MIN; *max = INT16_MAX; break;
    case 'H': *min = 0; *max = UINT16_MAX; break;
    case 'i': *min = INT32_MIN; *max = INT32_MAX; break;
    case 'I': *min = 0; *max = UINT32_MAX; break;
    case 'l': case 'q': *min = INT64_MIN; *max = INT64_MAX; break;
    default: *min = 0; *max = INT64_MAX; break; /* L Q */
  }
}

int cr_shm_new(cr_arena_t *a, int kind, int typecode, size_t n, cr_off_t lock_off, cr_off_t *off) {
  int size = cr_shm_itemsize(typecode);
  if (size < 0) return CR_EINVAL;
  if (kind == CR_OBJ_VALUE ? n != 1 : kind != CR_OBJ_ARRAY) return CR_EINVAL;
  if (lock_off && cr_obj_check(a, lock_off, CR_OBJ_LOCK) < 0 &&
      cr_obj_check(a, lock_off, CR_OBJ_RLOCK) < 0)
    return CR_EINVAL;
  if (n > (SIZE_MAX - sizeof(shm_t)) / (size_t)size) return CR_ENOMEM;
  int rc = cr_obj_new(a, (cr_obj_kind_t)kind, sizeof(shm_t) + n * (size_t)size, off);
  if (rc < 0) return rc;
  shm_t *s = shm_at(a, *off);
  s->typecode = (uint32_t)typecode;
  s->itemsize = (uint32_t)size;
  s->n = n;
  if (lock_off) {
    cr_obj_retain(a, lock_off);
    s->lock = lock_off;
  }
  return 0;
}

void cr__shm_destroy(cr_arena_t *a, cr_off_t off) {
  shm_t *s = shm_at(a, off);
  if (s->lock) cr_obj_release(a, s->lock, cr_sync_destroy);
  s->lock = 0;
}

int cr_shm_typecode(cr_arena_t *a, cr_off_t off) { return (int)shm_at(a, off)->typecode; }
size_t cr_shm_len(cr_arena_t *a, cr_off_t off) { return (size_t)shm_at(a, off)->n; }
void *cr_shm_data(cr_arena_t *a, cr_off_t off) { return items(shm_at(a, off)); }
cr_off_t cr_shm_lock(cr_arena_t *a, cr_off_t off) { return shm_at(a, off)->lock; }

/* Raw bits of an item, zero-extended. */
static uint64_t load_bits(void *p, unsigned size) {
  switch (size) {
    case 1: return __atomic_load_n((uint8_t *)p, __ATOMIC_RELAXED);
    case 2: return __atomic_load_n((uint16_t *)p, __ATOMIC_RELAXED);
    case 4: return __atomic_load_n((uint32_t *)p, __ATOMIC_RELAXED);
    default: return __atomic_load_n((uint64_t *)p, __ATOMIC_RELAXED);
  }
}

static void store_bits(void *p, unsigned size, uint64_t v) {
  switch (size) {
    case 1: __atomic_store_n((uint8_t *)p, (uint8_t)v, __ATOMIC_RELAXED); break;
    case 2: __atomic_store_n((uint16_t *)p, (uint16_t)v, __ATOMIC_RELAXED); break;
    case 4: __atomic_store_n((uint32_t *)p, (uint32_t)v, __ATOMIC_RELAXED); break;
    default: __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELAXED); break;
  }
}

static int cas_bits(void *p, unsigned size, uint64_t *expected, uint64_t desired) {
  switch (size) {
    case 1: {
      uint8_t e = (uint8_t)*expected;
      int ok = __atomic_compare_exchange_n((uint8_t *)p, &e, (uint8_t)desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
      *expected = e;
      return ok;
    }
    case 2: {
      uint16_t e = (uint16_t)*expected;
      int ok = __atomic_compare_exchange_n((uint16_t *)p, &e, (uint16_t)desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
      *expected = e;
      return ok;
    }
    case 4: {
      uint32_t e = (uint32_t)*expected;
      int ok = __atomic_compare_exchange_n((uint32_t *)p, &e, (uint32_t)desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
      *expected = e;
      return ok;
    }
    default:
      return __atomic_compare_exchange_n((uint64_t *)p, expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  }
}

/* The integer an item's bits stand for. */
static int64_t from_bits(int tc, uint64_t b) {
  switch (tc) {
    case 'b': return (int8_t)b;
    case 'h': return (int16_t)b;
    case 'i': return (int32_t)b;
    default: return (int64_t)b;
  }
}

static int in_range(int tc, int64_t v) {
  int64_t lo, hi;
  cr_shm_range(tc, &lo, &hi);
  return v >= lo && v <= hi;
}

static void *item(shm_t *s, size_t i) { return items(s) + i * s->itemsize; }

int cr_shm_get_int(cr_arena_t *a, cr_off_t off, size_t i, int64_t *out) {
  shm_t *s = shm_at(a, off);
  if (i >= s->n || !cr_shm_is_integer((int)s->typecode)) return CR_EINVAL;
  *out = from_bits((int)s->typecode, load_bits(item(s, i), s->itemsize));
  return 0;
}

int cr_shm_set_int(cr_arena_t *a, cr_off_t off, size_t i, int64_t v) {
  shm_t *s = shm_at(a, off);
  if (i >= s->n || !cr_shm_is_integer((int)s->typecode)) return CR_EINVAL;
  if (!in_range((int)s->typecode, v)) return CR_EOVERFLOW;
  store_bits(item(s, i), s->itemsize, (uint64_t)v);
  return 0;
}

int cr_shm_get_float(cr_arena_t *a, cr_off_t off, size_t i, double *out) {
  shm_t *s = shm_at(a, off);
  if (i >= s->n || cr_shm_is_integer((int)s->typecode)) return CR_EINVAL;
  uint64_t b = load_bits(item(s, i), s->itemsize);
  if (s->typecode == 'f') {
    uint32_t b32 = (uint32_t)b;
    float f;
    memcpy(&f, &b32, sizeof f);
    *out = f;
  } else {
    memcpy(out, &b, sizeof *out);
  }
  return 0;
}

int cr_shm_set_float(cr_arena_t *a, cr_off_t off, size_t i, double v) {
  shm_t *s = shm_at(a, off);
  if (i >= s->n || cr_shm_is_integer((int)s->typecode)) return CR_EINVAL;
  uint64_t b;
  if (s->typecode == 'f') {
    float f = (float)v;
    uint32_t b32;
    memcpy(&b32, &f, sizeof b32);
    b = b32;
  } else {
    memcpy(&b, &v, sizeof b);
  }
  store_bits(item(s, i), s->itemsize, b);
  return 0;
}

int cr_shm_add(cr_arena_t *a, cr_off_t off, size_t i, int64_t delta, int64_t *result) {
  shm_t *s = shm_at(a, off);
  int tc = (int)s->typecode;
  if (i >= s->n || !cr_shm_is_integer(tc)) return CR_EINVAL;
  void *p = item(s, i);
  uint64_t bits = load_bits(p, s->itemsize);
  for (;;) {
    int64_t cur = from_bits(tc, bits), nv;
    if (__builtin_add_overflow(cur, delta, &nv) || !in_range(tc, nv)) return CR_EOVERFLOW;
    if (cas_bits(p, s->itemsize, &bits, (uint64_t)nv)) {
      *result = nv;
      return 0;
    }
  }
}

int cr_shm_cas(cr_arena_t *a, cr_off_t off, size_t i, int64_t expected, int64_t desired) {
  shm_t *s = shm_at(a, off);
  int tc = (int)s->typecode;
  if (i >= s->n || !cr_shm_is_integer(tc)) return CR_EINVAL;
  if (!in_range(tc, desired)) return CR_EOVERFLOW;
  if (!in_range(tc, expected)) return 0;
  uint64_t e = (uint64_t)expected;
  if (s->itemsize < 8) e &= ((uint64_t)1 << (s->itemsize * 8)) - 1;
  return cas_bits(item(s, i), s->itemsize, &e, (uint64_t)desired);
}
