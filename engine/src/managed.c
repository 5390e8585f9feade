/* corral engine: managed objects (see corral/managed.h for the design:
 * where the state lives, locking, crash consistency, shutdown).
 *
 * Layout of the blocks, all in the arena and named by offset:
 *   box      a List/Dict header: robust mutex, closed flag, the offset of
 *            its current array/table (`state`, 0 when empty), the journal
 *   list     arr_t  {cap, n, e[cap]}: e[i] is the offset of a blob_t
 *   blob     {len, bytes}: one list element
 *   dict     tab_t  {ecap, used, live, icap, entries[ecap], index[icap]}:
 *            entries in insertion order (0 = deleted), index slots hold
 *            entry number + 1 (0 empty, DUMMY deleted), linear probing
 *   item     {hash, klen, vlen, key bytes, value bytes}: one dict entry
 *   manager  mgr_t with a registry block reg_t {cap, n, off[cap]}
 *
 * The publishing stores and the journal are seq_cst atomics: that keeps
 * the compiler (and the CPU) from moving a store across them, which is what
 * crash consistency rests on: the journal is written before the publish,
 * cleared after it, and a replaced block is freed only once its journal
 * slot is clear (so recovery can never free it a second time). */
#define _GNU_SOURCE
#include "corral/managed.h"
#include "corral/chan.h"
#include "corral/errors.h"
#include "corral/log.h"
#include "corral/sync.h"
#include "sync_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define JRN_SLOTS     4
#define JRN_ELEM      1u          /* journal entry names an element block */
#define LIST_MIN_CAP  8u
#define DICT_MIN_CAP  8u
#define IDX_EMPTY     0u
#define IDX_DUMMY     0xffffffffu
#define MAX_KEY       65536u
#define MAX_ENTRIES   0x7ffffff0u /* the index holds 32-bit entry numbers */

typedef struct {
  cr_obj_t hdr;                 /* hdr.flags: cr_managed_type_t */
  pthread_mutex_t m;
  _Atomic uint32_t closed;
#ifdef CORRAL_TESTING
  _Atomic uint32_t test_parked; /* processes stopped at a park point */
#endif
  uint32_t recoveries;
  uint32_t pad;
  _Atomic uint64_t state;       /* arr_t or tab_t, 0 when empty */
  _Atomic uint64_t jrn[JRN_SLOTS];
} box_t;

typedef struct {
  cr_obj_t hdr;
  pthread_mutex_t m;
  _Atomic uint32_t shut;
  uint32_t pad;
  _Atomic uint64_t reg;         /* reg_t, 0 when none */
} mgr_t;

typedef struct {
  uint64_t cap;
  _Atomic uint64_t n;
  _Atomic uint64_t off[];
} reg_t;

typedef struct {
  uint64_t cap;
  _Atomic uint64_t n;
  _Atomic uint64_t e[];
} arr_t;

typedef struct {
  uint64_t len;
  unsigned char bytes[];
} blob_t;

typedef struct {
  uint64_t ecap;
  _Atomic uint64_t used;        /* entries[0, used) are published */
  uint64_t live;                /* derived: non-deleted entries */
  uint64_t icap;                /* power of two, >= 2 * ecap */
} tab_t;

typedef struct {
  uint64_t hash;
  uint32_t klen;
  uint32_t vlen;
  unsigned char bytes[];        /* key, then value */
} item_t;

static cr_managed_drop_fn drop_hook;

void cr_managed_on_drop(cr_managed_drop_fn fn) { drop_hook = fn; }

static void *at(cr_arena_t *a, cr_off_t off) { return cr_arena_ptr(a, off); }
static box_t *box_at(cr_arena_t *a, cr_off_t off) { return at(a, off); }
static int is_list(const box_t *b) { return b->hdr.flags == CR_MANAGED_LIST; }

static _Atomic uint64_t *tab_entries(tab_t *t) { return (_Atomic uint64_t *)(t + 1); }
static uint32_t *tab_index(tab_t *t) { return (uint32_t *)(tab_entries(t) + t->ecap); }

/* Park points (managed.h, test hooks): only in a testing build; elsewhere
 * park() is nothing at all. */
#ifdef CORRAL_TESTING
static int park_where; /* this process only */

static void park(box_t *b, int where) {
  if (park_where != where) return;
  atomic_fetch_add(&b->test_parked, 1);
  for (;;) pause();
}

void cr_managed_test_park(int where) { park_where = where; }

uint32_t cr_managed_test_parked(cr_arena_t *a, cr_off_t off) {
  return atomic_load(&box_at(a, off)->test_parked);
}
#else
#define park(b, where) ((void)0)
#endif

/* ---- the journal -------------------------------------------------------------- */

/* A journal entry for element block `off` (0 for none). */
static uint64_t jrn_elem(cr_off_t off) { return off ? off | JRN_ELEM : 0; }

/* The journal entries of one publish: up to JRN_SLOTS, 0 for none. */
#define JRN(...) ((const uint64_t[JRN_SLOTS]){__VA_ARGS__})

/* Makes a mutation visible, the one way every mutation does (managed.h,
 * crash consistency): writes `jrn` (the blocks whose fate depends on the
 * store) to the journal, which is clear between operations, does the
 * single store *where = v, then clears the journal. Blocks that the store
 * replaced may be freed only after this returns. The test hook can park
 * the caller just before and just after the store. */
static void publish(box_t *b, _Atomic uint64_t *where, uint64_t v, const uint64_t jrn[JRN_SLOTS]) {
  for (int i = 0; i < JRN_SLOTS; i++)
    if (jrn[i]) atomic_store(&b->jrn[i], jrn[i]);
  park(b, CR_MANAGED_PARK_BEFORE);
  atomic_store(where, v);
  park(b, CR_MANAGED_PARK_AFTER);
  for (int i = 0; i < JRN_SLOTS; i++) atomic_store(&b->jrn[i], 0);
}

/* ---- element blocks --------------------------------------------------------------- */

static const unsigned char *item_value(const item_t *it) { return it->bytes + it->klen; }

/* Hands an element's value bytes to the drop hook, then frees it. */
static void elem_free(cr_arena_t *a, const box_t *b, cr_off_t off) {
  if (!off) return;
  if (drop_hook) {
    if (is_list(b)) {
      blob_t *bl = at(a, off);
      drop_hook(bl->bytes, (size_t)bl->len);
    } else {
      item_t *it = at(a, off);
      drop_hook(item_value(it), it->vlen);
    }
  }
  cr_arena_free(a, off);
}

static int blob_new(cr_arena_t *a, const void *data, size_t len, cr_off_t *off) {
  if (len > SIZE_MAX - sizeof(blob_t)) return CR_ENOMEM;
  int rc = cr_arena_alloc(a, sizeof(blob_t) + len, off);
  if (rc < 0) return rc;
  blob_t *bl = at(a, *off);
  bl->len = len;
  if (len) memcpy(bl->bytes, data, len);
  return 0;
}

/* FNV-1a, then a final avalanche so that the low bits (the index slot) use
 * all of the key. */
static uint64_t key_hash(const void *key, size_t klen) {
  const unsigned char *p = key;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < klen; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

static int item_new(cr_arena_t *a, uint64_t h, const void *key, size_t klen, const void *data, size_t len,
                    cr_off_t *off) {
  if (len > UINT32_MAX || klen > MAX_KEY) return CR_EINVAL;
  int rc = cr_arena_alloc(a, sizeof(item_t) + klen + len, off);
  if (rc < 0) return rc;
  item_t *it = at(a, *off);
  it->hash = h;
  it->klen = (uint32_t)klen;
  it->vlen = (uint32_t)len;
  memcpy(it->bytes, key, klen);
  if (len) memcpy(it->bytes + klen, data, len);
  return 0;
}

/* ---- recovery ----------------------------------------------------------------------- */

static int elem_reachable(cr_arena_t *a, box_t *b, cr_off_t off) {
  cr_off_t st = atomic_load(&b->state);
  if (!st) return 0;
  if (is_list(b)) {
    arr_t *A = at(a, st);
    for (uint64_t i = 0, n = atomic_load(&A->n); i < n; i++)
      if (atomic_load(&A->e[i]) == off) return 1;
  } else {
    tab_t *t = at(a, st);
    _Atomic uint64_t *en = tab_entries(t);
    for (uint64_t j = 0, n = atomic_load(&t->used); j < n; j++)
      if (atomic_load(&en[j]) == off) return 1;
  }
  return 0;
}

/* Index slot for entry j's hash: the first empty one on its probe path. */
static void index_put(tab_t *t, uint64_t h, uint64_t j) {
  uint32_t *idx = tab_index(t);
  uint64_t mask = t->icap - 1, s = h & mask;
  while (idx[s] != IDX_EMPTY) s = (s + 1) & mask;
  idx[s] = (uint32_t)(j + 1);
}

/* Rebuilds what is derived from a table's published entries. */
static void tab_rebuild(cr_arena_t *a, tab_t *t) {
  memset(tab_index(t), 0, t->icap * sizeof(uint32_t));
  _Atomic uint64_t *en = tab_entries(t);
  uint64_t live = 0;
  for (uint64_t j = 0, n = atomic_load(&t->used); j < n; j++) {
    cr_off_t eo = atomic_load(&en[j]);
    if (!eo) continue;
    index_put(t, ((item_t *)at(a, eo))->hash, j);
    live++;
  }
  t->live = live;
}

/* Settles the operation of a holder that died: see managed.h. Each journal
 * slot is cleared before its block is freed, so a recovery that is itself
 * interrupted can leak a block but never free one twice. */
static void recover(cr_arena_t *a, box_t *b) {
  for (int i = 0; i < JRN_SLOTS; i++) {
    uint64_t v = atomic_load(&b->jrn[i]);
    if (!v) continue;
    cr_off_t off = v & ~(uint64_t)JRN_ELEM;
    int reach = (v & JRN_ELEM) ? elem_reachable(a, b, off) : atomic_load(&b->state) == off;
    atomic_store(&b->jrn[i], 0);
    if (reach) continue;
    if (v & JRN_ELEM) elem_free(a, b, off);
    else cr_arena_free(a, off);
  }
  cr_off_t st = atomic_load(&b->state);
  if (st && !is_list(b)) tab_rebuild(a, at(a, st));
  b->recoveries++;
}

/* ---- locking ---------------------------------------------------------------------- */

static int box_lock(cr_arena_t *a, box_t *b, int interruptible) {
  if (cr__mutex_owner(&b->m) == cr__tid()) return CR_ESTATE;
  int rc = cr__mutex_lock(&b->m, -1, interruptible);
  if (rc == CR_EOWNERDEAD) {
    recover(a, b);
    if (cr_log_enabled(CR_LOG_WARNING))
      cr_log(CR_LOG_WARNING, "Manager: recovered an object whose last writer died in an operation (OwnerDied)");
    rc = 0;
  }
  return rc;
}

int cr_managed_lock(cr_arena_t *a, cr_off_t off) {
  box_t *b = box_at(a, off);
  int rc = box_lock(a, b, 1);
  if (rc < 0) return rc;
  if (atomic_load(&b->closed)) {
    cr__mutex_unlock(&b->m);
    return CR_ECLOSED;
  }
  return 0;
}

void cr_managed_unlock(cr_arena_t *a, cr_off_t off) { cr__mutex_unlock(&box_at(a, off)->m); }

/* Empties the container: publishes "empty" first, then frees what the old
 * state held (a death half way leaks the rest, nothing worse). */
static void free_contents(cr_arena_t *a, box_t *b) {
  cr_off_t st = atomic_exchange(&b->state, 0);
  if (!st) return;
  if (is_list(b)) {
    arr_t *A = at(a, st);
    for (uint64_t i = 0, n = atomic_load(&A->n); i < n; i++) elem_free(a, b, atomic_load(&A->e[i]));
  } else {
    tab_t *t = at(a, st);
    _Atomic uint64_t *en = tab_entries(t);
    for (uint64_t j = 0, n = atomic_load(&t->used); j < n; j++) elem_free(a, b, atomic_load(&en[j]));
  }
  cr_arena_free(a, st);
}

static int box_close(cr_arena_t *a, box_t *b, int interruptible) {
  int rc = box_lock(a, b, interruptible);
  if (rc < 0) return rc;
  atomic_store(&b->closed, 1);
  free_contents(a, b);
  cr__mutex_unlock(&b->m);
  return 0;
}

int cr_managed_close(cr_arena_t *a, cr_off_t off) { return box_close(a, box_at(a, off), 1); }
int cr_managed_is_closed(cr_arena_t *a, cr_off_t off) { return (int)atomic_load(&box_at(a, off)->closed); }
uint32_t cr_managed_recoveries(cr_arena_t *a, cr_off_t off) { return box_at(a, off)->recoveries; }

/* ---- any managed object -------------------------------------------------------------- */

static const char *const type_names[CR_MANAGED__MAX] = {
  "none",
#define XX(name, tname) tname,
  CR_MANAGED_TYPE_MAP(XX)
#undef XX
};

const char *cr_managed_type_name(int type) {
  return type > 0 && type < CR_MANAGED__MAX ? type_names[type] : "unknown";
}

int cr_managed_type(cr_arena_t *a, cr_off_t off) {
  if (cr_obj_check(a, off, CR_OBJ_MANAGED) < 0) return CR_MANAGED_NONE;
  uint32_t t = ((cr_obj_t *)at(a, off))->flags;
  return t < CR_MANAGED__MAX ? (int)t : CR_MANAGED_NONE;
}

/* Drops the registry's reference on a tracked object, closing it first
 * (for every process) when `close`. */
static void untrack(cr_arena_t *a, cr_off_t o, int close) {
  cr_obj_t *h = at(a, o);
  switch (h->kind) {
    case CR_OBJ_MANAGED:
      if (close) box_close(a, at(a, o), 0);
      cr_managed_release(a, o);
      break;
    case CR_OBJ_QUEUE:
      if (close) cr_queue_close(a, o);
      cr_queue_release(a, o);
      break;
    default:
      cr_obj_release(a, o, cr_sync_destroy);
      break;
  }
}

void cr_managed_destroy(cr_arena_t *a, cr_off_t off) {
  cr_obj_t *h = at(a, off);
  if (h->flags == CR_MANAGED_MANAGER) {
    mgr_t *m = at(a, off);
    cr_off_t ro = atomic_exchange(&m->reg, 0);
    if (!ro) return;
    reg_t *r = at(a, ro);
    for (uint64_t i = 0, n = atomic_load(&r->n); i < n; i++) {
      cr_off_t o = atomic_exchange(&r->off[i], 0);
      if (o) untrack(a, o, 0);
    }
    cr_arena_free(a, ro);
    return;
  }
  box_t *b = at(a, off);
  for (int i = 0; i < JRN_SLOTS; i++)
    if (atomic_load(&b->jrn[i])) { /* its last operation was never settled */
      recover(a, b);
      break;
    }
  free_contents(a, b);
}

int cr_managed_release(cr_arena_t *a, cr_off_t off) { return cr_obj_release(a, off, cr_managed_destroy); }

/* ---- Manager -------------------------------------------------------------------------- */

int cr_manager_new(cr_arena_t *a, cr_off_t *off) {
  int rc = cr_obj_new(a, CR_OBJ_MANAGED, sizeof(mgr_t), off);
  if (rc < 0) return rc;
  mgr_t *m = at(a, *off);
  m->hdr.flags = CR_MANAGED_MANAGER;
  cr__mutex_init(&m->m);
  return 0;
}

static int trackable(cr_arena_t *a, cr_off_t obj) {
  if (cr_obj_check(a, obj, CR_OBJ_NONE) < 0) return 0;
  switch (((cr_obj_t *)at(a, obj))->kind) {
    case CR_OBJ_MANAGED: {
      int t = cr_managed_type(a, obj);
      return t == CR_MANAGED_LIST || t == CR_MANAGED_DICT || t == CR_MANAGED_NAMESPACE;
    }
    case CR_OBJ_QUEUE: case CR_OBJ_LOCK: case CR_OBJ_RLOCK: case CR_OBJ_SEMAPHORE: case CR_OBJ_EVENT:
    case CR_OBJ_CONDITION: case CR_OBJ_BARRIER: case CR_OBJ_VALUE: case CR_OBJ_ARRAY:
      return 1;
    default:
      return 0;
  }
}

static int mgr_lock(mgr_t *m, int interruptible) {
  int rc = cr__mutex_lock(&m->m, -1, interruptible);
  /* The registry is published by single stores: nothing to repair. */
  return rc == CR_EOWNERDEAD ? 0 : rc;
}

int cr_manager_track(cr_arena_t *a, cr_off_t mgr, cr_off_t obj) {
  if (cr_managed_type(a, mgr) != CR_MANAGED_MANAGER || !trackable(a, obj)) return CR_EINVAL;
  mgr_t *m = at(a, mgr);
  int rc = mgr_lock(m, 1);
  if (rc < 0) return rc;
  if (atomic_load(&m->shut)) {
    cr__mutex_unlock(&m->m);
    return CR_ECLOSED;
  }
  cr_off_t ro = atomic_load(&m->reg);
  reg_t *r = ro ? at(a, ro) : NULL;
  uint64_t n = r ? atomic_load(&r->n) : 0;
  if (!r || n == r->cap) {
    uint64_t cap = r ? r->cap * 2 : 16;
    cr_off_t no;
    rc = cr_arena_alloc(a, sizeof(reg_t) + cap * sizeof(uint64_t), &no);
    if (rc < 0) {
      cr__mutex_unlock(&m->m);
      return rc;
    }
    reg_t *nr = at(a, no);
    nr->cap = cap;
    for (uint64_t i = 0; i < n; i++) atomic_store_explicit(&nr->off[i], atomic_load(&r->off[i]), memory_order_relaxed);
    atomic_store_explicit(&nr->off[n], obj, memory_order_relaxed);
    atomic_store(&nr->n, n + 1);
    cr_obj_retain(a, obj);
    atomic_store(&m->reg, no); /* publish; a death before the free leaks the old block */
    if (ro) cr_arena_free(a, ro);
  } else {
    atomic_store(&r->off[n], obj);
    cr_obj_retain(a, obj);
    atomic_store(&r->n, n + 1); /* publish */
  }
  cr__mutex_unlock(&m->m);
  return 0;
}

int cr_manager_shutdown(cr_arena_t *a, cr_off_t mgr) {
  mgr_t *m = at(a, mgr);
  int rc = mgr_lock(m, 1);
  if (rc < 0) return rc;
  atomic_store(&m->shut, 1);
  cr_off_t ro = atomic_load(&m->reg);
  if (ro) {
    reg_t *r = at(a, ro);
    for (uint64_t i = 0, n = atomic_load(&r->n); i < n; i++) {
      /* Cleared before it is handled: a death here leaks that one object
       * rather than releasing it twice when the shutdown is finished. */
      cr_off_t o = atomic_exchange(&r->off[i], 0);
      if (o) untrack(a, o, 1);
    }
    atomic_store(&m->reg, 0);
    cr_arena_free(a, ro);
  }
  cr__mutex_unlock(&m->m);
  return 0;
}

int cr_manager_is_shutdown(cr_arena_t *a, cr_off_t mgr) { return (int)atomic_load(&((mgr_t *)at(a, mgr))->shut); }

size_t cr_manager_tracked(cr_arena_t *a, cr_off_t mgr) {
  mgr_t *m = at(a, mgr);
  if (mgr_lock(m, 0) < 0) return 0;
  size_t count = 0;
  cr_off_t ro = atomic_load(&m->reg);
  if (ro) {
    reg_t *r = at(a, ro);
    for (uint64_t i = 0, n = atomic_load(&r->n); i < n; i++) count += atomic_load(&r->off[i]) != 0;
  }
  cr__mutex_unlock(&m->m);
  return count;
}

int cr_managed_new(cr_arena_t *a, cr_off_t mgr, int type, cr_off_t *off) {
  if (type != CR_MANAGED_LIST && type != CR_MANAGED_DICT && type != CR_MANAGED_NAMESPACE) return CR_EINVAL;
  int rc = cr_obj_new(a, CR_OBJ_MANAGED, sizeof(box_t), off);
  if (rc < 0) return rc;
  box_t *b = at(a, *off);
  b->hdr.flags = (uint32_t)type;
  cr__mutex_init(&b->m);
  if (mgr) {
    rc = cr_manager_track(a, mgr, *off);
    if (rc < 0) {
      cr_managed_release(a, *off);
      *off = 0;
      return rc;
    }
  }
  return 0;
}

/* ---- List --------------------------------------------------------------------------------- */

static arr_t *list_arr(cr_arena_t *a, box_t *b) {
  cr_off_t st = atomic_load(&b->state);
  return st ? at(a, st) : NULL;
}

size_t cr_list_len(cr_arena_t *a, cr_off_t off) {
  arr_t *A = list_arr(a, box_at(a, off));
  return A ? (size_t)atomic_load(&A->n) : 0;
}

int cr_list_get(cr_arena_t *a, cr_off_t off, size_t i, cr_managed_sink_fn sink, void *ud) {
  arr_t *A = list_arr(a, box_at(a, off));
  if (!A || i >= atomic_load(&A->n)) return CR_EINVAL;
  blob_t *bl = at(a, atomic_load(&A->e[i]));
  int rc = sink(ud, bl->bytes, (size_t)bl->len);
  return rc < 0 ? rc : 0;
}

/* A new array of `cap` entries (not yet published). */
static int arr_new(cr_arena_t *a, uint64_t cap, cr_off_t *no, arr_t **out) {
  if (cap > (SIZE_MAX - sizeof(arr_t)) / sizeof(uint64_t)) return CR_ENOMEM;
  int rc = cr_arena_alloc(a, sizeof(arr_t) + cap * sizeof(uint64_t), no);
  if (rc < 0) return rc;
  *out = at(a, *no);
  (*out)->cap = cap;
  return 0;
}

/* Capacity for n entries: the current one while it fits and is not more
 * than four times too large, else the next power of two. */
static uint64_t arr_cap_for(uint64_t cur, uint64_t n) {
  if (n <= cur && (cur <= LIST_MIN_CAP || n > cur / 4)) return cur;
  uint64_t c = LIST_MIN_CAP;
  while (c < n) c *= 2;
  return c;
}

/* Publishes the new array or table `no` in place of the current one
 * (journaled with the element blocks elem_new / elem_old, either may be 0),
 * then frees the old one and elem_old. */
static void state_swap(cr_arena_t *a, box_t *b, cr_off_t no, cr_off_t elem_new, cr_off_t elem_old) {
  cr_off_t st = atomic_load(&b->state);
  publish(b, &b->state, no, JRN(jrn_elem(elem_new), jrn_elem(elem_old), no, st));
  if (st) cr_arena_free(a, st);
  elem_free(a, b, elem_old);
}

int cr_list_append(cr_arena_t *a, cr_off_t off, const void *data, size_t len) {
  box_t *b = box_at(a, off);
  arr_t *A = list_arr(a, b);
  uint64_t n = A ? atomic_load(&A->n) : 0;
  cr_off_t bo;
  int rc = blob_new(a, data, len, &bo);
  if (rc < 0) return rc;
  if (A && n < A->cap) {
    atomic_store(&A->e[n], bo);
    publish(b, &A->n, n + 1, JRN(jrn_elem(bo)));
    return 0;
  }
  cr_off_t no;
  arr_t *N;
  rc = arr_new(a, A ? A->cap * 2 : LIST_MIN_CAP, &no, &N);
  if (rc < 0) {
    cr_arena_free(a, bo);
    return rc;
  }
  for (uint64_t i = 0; i < n; i++) atomic_store_explicit(&N->e[i], atomic_load(&A->e[i]), memory_order_relaxed);
  atomic_store_explicit(&N->e[n], bo, memory_order_relaxed);
  atomic_store_explicit(&N->n, n + 1, memory_order_relaxed);
  state_swap(a, b, no, bo, 0);
  return 0;
}

int cr_list_set(cr_arena_t *a, cr_off_t off, size_t i, const void *data, size_t len) {
  box_t *b = box_at(a, off);
  arr_t *A = list_arr(a, b);
  if (!A || i >= atomic_load(&A->n)) return CR_EINVAL;
  cr_off_t bo;
  int rc = blob_new(a, data, len, &bo);
  if (rc < 0) return rc;
  cr_off_t old = atomic_load(&A->e[i]);
  publish(b, &A->e[i], bo, JRN(jrn_elem(bo), jrn_elem(old)));
  elem_free(a, b, old);
  return 0;
}

int cr_list_insert(cr_arena_t *a, cr_off_t off, size_t i, const void *data, size_t len) {
  box_t *b = box_at(a, off);
  arr_t *A = list_arr(a, b);
  uint64_t n = A ? atomic_load(&A->n) : 0;
  if (i > n) return CR_EINVAL;
  if (i == n) return cr_list_append(a, off, data, len);
  cr_off_t bo, no;
  arr_t *N;
  int rc = blob_new(a, data, len, &bo);
  if (rc < 0) return rc;
  rc = arr_new(a, arr_cap_for(A->cap, n + 1), &no, &N);
  if (rc < 0) {
    cr_arena_free(a, bo);
    return rc;
  }
  for (uint64_t k = 0, d = 0; k < n; k++) {
    if (k == i) atomic_store_explicit(&N->e[d++], bo, memory_order_relaxed);
    atomic_store_explicit(&N->e[d++], atomic_load(&A->e[k]), memory_order_relaxed);
  }
  atomic_store_explicit(&N->n, n + 1, memory_order_relaxed);
  state_swap(a, b, no, bo, 0);
  return 0;
}

int cr_list_pop(cr_arena_t *a, cr_off_t off, size_t i, cr_managed_sink_fn sink, void *ud) {
  box_t *b = box_at(a, off);
  arr_t *A = list_arr(a, b);
  uint64_t n = A ? atomic_load(&A->n) : 0;
  if (i >= n) return CR_EINVAL;
  cr_off_t old = atomic_load(&A->e[i]);
  if (sink) {
    blob_t *bl = at(a, old);
    int rc = sink(ud, bl->bytes, (size_t)bl->len);
    if (rc < 0) return rc;
  }
  uint64_t cap = arr_cap_for(A->cap, n - 1);
  if (i == n - 1 && cap == A->cap) {
    publish(b, &A->n, n - 1, JRN(jrn_elem(old)));
    elem_free(a, b, old);
    return 0;
  }
  cr_off_t no;
  arr_t *N;
  int rc = arr_new(a, cap, &no, &N);
  if (rc < 0) return rc;
  for (uint64_t k = 0, d = 0; k < n; k++)
    if (k != i) atomic_store_explicit(&N->e[d++], atomic_load(&A->e[k]), memory_order_relaxed);
  atomic_store_explicit(&N->n, n - 1, memory_order_relaxed);
  state_swap(a, b, no, 0, old);
  return 0;
}

int cr_list_permute(cr_arena_t *a, cr_off_t off, const uint32_t *perm, size_t n) {
  box_t *b = box_at(a, off);
  arr_t *A = list_arr(a, b);
  if (n != (A ? atomic_load(&A->n) : 0)) return CR_EINVAL;
  if (n == 0) return 0;
  unsigned char *seen = calloc(n, 1);
  if (!seen) return -ENOMEM;
  for (size_t k = 0; k < n; k++) {
    if (perm[k] >= n || seen[perm[k]]) {
      free(seen);
      return CR_EINVAL;
    }
    seen[perm[k]] = 1;
  }
  free(seen);
  cr_off_t no;
  arr_t *N;
  int rc = arr_new(a, A->cap, &no, &N);
  if (rc < 0) return rc;
  for (size_t k = 0; k < n; k++)
    atomic_store_explicit(&N->e[k], atomic_load(&A->e[perm[k]]), memory_order_relaxed);
  atomic_store_explicit(&N->n, n, memory_order_relaxed);
  state_swap(a, b, no, 0, 0);
  return 0;
}

/* ---- Dict ------------------------------------------------------------------------------------ */

static tab_t *dict_tab(cr_arena_t *a, box_t *b) {
  cr_off_t st = atomic_load(&b->state);
  return st ? at(a, st) : NULL;
}

size_t cr_dict_len(cr_arena_t *a, cr_off_t off) {
  tab_t *t = dict_tab(a, box_at(a, off));
  return t ? (size_t)t->live : 0;
}

/* Finds key: 1 with *slot and *j (entry number) set, or 0 with *slot the
 * first empty slot of its probe path. */
static int tab_find(cr_arena_t *a, tab_t *t, uint64_t h, const void *key, size_t klen, uint64_t *slot,
                    uint64_t *j) {
  uint32_t *idx = tab_index(t);
  _Atomic uint64_t *en = tab_entries(t);
  uint64_t mask = t->icap - 1, s = h & mask, used = atomic_load(&t->used);
  for (;;) {
    uint32_t v = idx[s];
    if (v == IDX_EMPTY) {
      *slot = s;
      return 0;
    }
    if (v != IDX_DUMMY && v - 1 < used) {
      cr_off_t eo = atomic_load(&en[v - 1]);
      item_t *it = eo ? at(a, eo) : NULL;
      if (it && it->hash == h && it->klen == klen && memcmp(it->bytes, key, klen) == 0) {
        *slot = s;
        *j = v - 1;
        return 1;
      }
    }
    s = (s + 1) & mask;
  }
}

int cr_dict_get(cr_arena_t *a, cr_off_t off, const void *key, size_t klen, cr_managed_sink_fn sink,
                void *ud) {
  tab_t *t = dict_tab(a, box_at(a, off));
  uint64_t s, j;
  if (!t || !tab_find(a, t, key_hash(key, klen), key, klen, &s, &j)) return 0;
  item_t *it = at(a, atomic_load(&tab_entries(t)[j]));
  int rc = sink(ud, item_value(it), it->vlen);
  return rc < 0 ? rc : 1;
}

/* A new table holding the live entries of t (if any), compacted, in
 * order, with room for at least `extra` more. */
static int tab_compact(cr_arena_t *a, tab_t *t, uint64_t extra, cr_off_t *no, tab_t **out) {
  uint64_t live = t ? t->live : 0, need = (live + extra) * 2, ecap = DICT_MIN_CAP;
  while (ecap < need) ecap *= 2;
  if (ecap > MAX_ENTRIES) return CR_ENOMEM;
  uint64_t icap = ecap * 2;
  int rc = cr_arena_alloc(a, sizeof(tab_t) + ecap * sizeof(uint64_t) + icap * sizeof(uint32_t), no);
  if (rc < 0) return rc;
  tab_t *n = at(a, *no);
  n->ecap = ecap;
  n->icap = icap;
  uint64_t d = 0;
  if (t) {
    _Atomic uint64_t *src = tab_entries(t), *dst = tab_entries(n);
    for (uint64_t j = 0, u = atomic_load(&t->used); j < u; j++) {
      cr_off_t eo = atomic_load(&src[j]);
      if (!eo) continue;
      atomic_store_explicit(&dst[d], eo, memory_order_relaxed);
      index_put(n, ((item_t *)at(a, eo))->hash, d);
      d++;
    }
  }
  atomic_store_explicit(&n->used, d, memory_order_relaxed);
  n->live = d;
  *out = n;
  return 0;
}

int cr_dict_set(cr_arena_t *a, cr_off_t off, const void *key, size_t klen, const void *data, size_t len) {
  if (klen > MAX_KEY) return CR_EINVAL;
  box_t *b = box_at(a, off);
  tab_t *t = dict_tab(a, b);
  uint64_t h = key_hash(key, klen), s = 0, j = 0;
  int found = t ? tab_find(a, t, h, key, klen, &s, &j) : 0;
  cr_off_t io;
  int rc = item_new(a, h, key, klen, data, len, &io);
  if (rc < 0) return rc;
  if (found) {
    _Atomic uint64_t *en = tab_entries(t);
    cr_off_t old = atomic_load(&en[j]);
    publish(b, &en[j], io, JRN(jrn_elem(io), jrn_elem(old)));
    elem_free(a, b, old);
    return 0;
  }
  uint64_t used = t ? atomic_load(&t->used) : 0;
  if (t && used < t->ecap) {
    atomic_store(&tab_entries(t)[used], io);
    tab_index(t)[s] = (uint32_t)(used + 1);
    publish(b, &t->used, used + 1, JRN(jrn_elem(io)));
    t->live++; /* derived: a recovery recounts it */
    return 1;
  }
  cr_off_t no;
  tab_t *n;
  rc = tab_compact(a, t, 1, &no, &n);
  if (rc < 0) {
    cr_arena_free(a, io);
    return rc;
  }
  uint64_t d = atomic_load(&n->used);
  atomic_store_explicit(&tab_entries(n)[d], io, memory_order_relaxed);
  index_put(n, h, d);
  atomic_store_explicit(&n->used, d + 1, memory_order_relaxed);
  n->live = d + 1;
  state_swap(a, b, no, io, 0);
  return 1;
}

int cr_dict_pop(cr_arena_t *a, cr_off_t off, const void *key, size_t klen, cr_managed_sink_fn sink,
                void *ud) {
  box_t *b = box_at(a, off);
  tab_t *t = dict_tab(a, b);
  uint64_t s, j;
  if (!t || !tab_find(a, t, key_hash(key, klen), key, klen, &s, &j)) return 0;
  _Atomic uint64_t *en = tab_entries(t);
  cr_off_t old = atomic_load(&en[j]);
  if (sink) {
    item_t *it = at(a, old);
    int rc = sink(ud, item_value(it), it->vlen);
    if (rc < 0) return rc;
  }
  publish(b, &en[j], 0, JRN(jrn_elem(old)));
  tab_index(t)[s] = IDX_DUMMY; /* derived, as is live: a recovery rebuilds both */
  t->live--;
  elem_free(a, b, old);
  return 1;
}

int cr_dict_each(cr_arena_t *a, cr_off_t off, cr_dict_each_fn fn, void *ud) {
  tab_t *t = dict_tab(a, box_at(a, off));
  if (!t) return 0;
  _Atomic uint64_t *en = tab_entries(t);
  for (uint64_t j = 0, u = atomic_load(&t->used); j < u; j++) {
    cr_off_t eo = atomic_load(&en[j]);
    if (!eo) continue;
    item_t *it = at(a, eo);
    int rc = fn(ud, it->bytes, it->klen, item_value(it), it->vlen);
    if (rc) return rc;
  }
  return 0;
}
