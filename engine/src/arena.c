/* corral engine: the shared arena (see corral/arena.h).
 *
 * Layout of the mapping:
 *   [0, CR_PAGE)            header: magic, robust allocator lock, free lists
 *   [CR_PAGE, CR_PAGE+heap) the heap, managed by a buddy allocator
 *
 * Buddy blocks are 2^order bytes (order >= MIN_ORDER) aligned to their size
 * relative to the heap start, each starting with a 16-byte header; a free
 * block also holds its free-list links. Invariant: the bytes of a free block
 * beyond its header are zero, so allocation only clears the links. Large
 * blocks punch their pages out of the memfd when freed, which both returns
 * the memory and keeps that invariant for free.
 *
 * A process can die inside the allocator (SIGKILL while it holds the lock).
 * Each operation first writes what it is doing (op: which block, of which
 * order) and orders its edits so that block headers always tile the heap;
 * whoever takes the lock over settles the dead one's operation (the block
 * goes back to being free, unless the caller's record in the arena already
 * names it) and rebuilds the free lists and the counts from the headers
 * (recover). */
#define _GNU_SOURCE
#include "corral/arena.h"
#include "corral/errors.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CR_PAGE        4096u
#define ARENA_MAGIC    0x6c617263u /* "crla" */
#define ARENA_VERSION  3u
#define MIN_ORDER      6u          /* 64-byte blocks */
#define MAX_ORDERS     48u
#define PUNCH_ORDER    16u         /* blocks of 64 KiB and more give pages back */
#define BLK_MAGIC      0x6b6c62u   /* low 24 bits of a block header's tag */

enum { OP_NONE, OP_ALLOC, OP_FREE };

typedef struct {
  uint32_t magic;
  uint32_t version;
  uint64_t heap_size;
  uint32_t max_order;
  uint32_t pad;
  pthread_mutex_t lock;
  uint64_t free_head[MAX_ORDERS];
  uint64_t in_use;
  uint64_t blocks;
  /* The operation under the lock, what to finish if its process dies, in
   * one word so that it changes in one store: kind << 62 | target << 54 |
   * order << 48 | block. The block of that order becomes free again; the
   * headers that may lie inside it are at block + 2^j, target <= j < order. */
  uint64_t op;
  /* Where in the arena the caller records the block, or 0: OP_ALLOC, the
   * word that receives it; OP_FREE, the word it is freed from (cleared
   * before the free merges anything, so op still names the block then). */
  uint64_t op_out;
  _Atomic uint64_t objects;            /* shared objects alive */
  _Atomic uint64_t roots[CR_ARENA_ROOTS];
} arena_hdr_t;

typedef struct {
  uint32_t magic;  /* BLK_MAGIC */
  uint8_t order;
  uint8_t is_free;
  uint16_t pad;
  uint64_t pad2;
  /* free blocks only: */
  uint64_t next, prev;
} blk_t;

#define BLK_HDR 16u

struct cr_arena_s {
  char *base;
  size_t map_size;
  int fd;
  arena_hdr_t *hdr;
};

_Static_assert(sizeof(arena_hdr_t) <= CR_PAGE, "arena header fits a page");
_Static_assert(sizeof(blk_t) == 32, "free block header is 32 bytes");

static blk_t *blk_at(cr_arena_t *a, uint64_t off) { return (blk_t *)(a->base + off); }

static void recover(cr_arena_t *a);

typedef void (*walk_fn)(cr_arena_t *a, uint64_t b, unsigned order, int is_free, void *ud);

/* Calls fn for every block, in address order, from the headers alone (not
 * the free lists). Headers that do not tile the heap abort: nothing can be
 * trusted then. */
static void walk(cr_arena_t *a, walk_fn fn, void *ud) {
  uint64_t end = CR_PAGE + a->hdr->heap_size;
  for (uint64_t p = CR_PAGE; p < end;) {
    blk_t *b = blk_at(a, p);
    unsigned o = b->order;
    if (b->magic != BLK_MAGIC || o < MIN_ORDER || o > a->hdr->max_order ||
        ((p - CR_PAGE) & (((uint64_t)1 << o) - 1)) || p + ((uint64_t)1 << o) > end) {
      fprintf(stderr, "corral: the shared arena is corrupt at offset %llu\n", (unsigned long long)p);
      abort();
    }
    fn(a, p, o, b->is_free, ud);
    p += (uint64_t)1 << o;
  }
}

static void list_push(cr_arena_t *a, uint64_t off, unsigned order);

/* recover's walk: the free lists and counts from the headers. */
static void relist(cr_arena_t *a, uint64_t b, unsigned order, int is_free, void *ud) {
  (void)ud;
  if (is_free) {
    list_push(a, b, order);
  } else {
    a->hdr->in_use += (uint64_t)1 << order;
    a->hdr->blocks++;
  }
}

static void arena_lock(cr_arena_t *a) {
  int rc = pthread_mutex_lock(&a->hdr->lock);
  if (rc == EOWNERDEAD) { /* a process died inside the allocator */
    recover(a);
    pthread_mutex_consistent(&a->hdr->lock);
  }
}

static void arena_unlock(cr_arena_t *a) { pthread_mutex_unlock(&a->hdr->lock); }

static unsigned order_for(size_t need) {
  unsigned o = MIN_ORDER;
  while (o < 63 && ((size_t)1 << o) < need) o++;
  return o;
}

static void list_push(cr_arena_t *a, uint64_t off, unsigned order) {
  blk_t *b = blk_at(a, off);
  b->magic = BLK_MAGIC;
  b->order = (uint8_t)order;
  b->is_free = 1;
  b->prev = 0;
  b->next = a->hdr->free_head[order];
  if (b->next) blk_at(a, b->next)->prev = off;
  a->hdr->free_head[order] = off;
}

/* Unlinks a free block; its header still says free (the caller decides). */
static void list_remove(cr_arena_t *a, uint64_t off) {
  blk_t *b = blk_at(a, off);
  if (b->prev) blk_at(a, b->prev)->next = b->next;
  else a->hdr->free_head[b->order] = b->next;
  if (b->next) blk_at(a, b->next)->prev = b->prev;
  b->next = b->prev = 0;
}

/* The steps of an operation reach memory in program order: a process killed
 * between two steps has made exactly the first (a compiler barrier is
 * enough: a killed process's executed stores all become visible). */
#define STEP() atomic_signal_fence(memory_order_seq_cst)

static void op_set(arena_hdr_t *h, uint64_t kind, uint64_t b, unsigned order, unsigned target) {
  STEP();
  h->op = kind << 62 | (uint64_t)target << 54 | (uint64_t)order << 48 | b;
  STEP();
}

/* Takes over from a process that died holding the lock. An allocation
 * whose caller's record in the arena (op_out) already names its block
 * stands: the block is what that record says. Otherwise the operation is
 * undone or finished so that its block is one free block of its order (an
 * allocation the caller never received is as good as not made; a free is
 * finished), with zero bytes beyond its header: the only headers inside it
 * that the dead process may have written are the halves a split pushed
 * (OP_ALLOC) or the upper half of the merge under way (OP_FREE). Then the
 * free lists and the counts are rebuilt by walking the headers, which tile
 * the heap at every step of both operations. */
static void recover(cr_arena_t *a) {
  arena_hdr_t *h = a->hdr;
  if (h->op >> 62 != OP_NONE) {
    uint64_t at = h->op & ((UINT64_C(1) << 48) - 1);
    unsigned o = (unsigned)(h->op >> 48) & 63u, target = (unsigned)(h->op >> 54) & 63u;
    blk_t *b = blk_at(a, at);
    uint64_t *rec = h->op_out ? (uint64_t *)(a->base + h->op_out) : NULL;
    if (h->op >> 62 == OP_ALLOC && rec && *rec == at + BLK_HDR) {
      /* the caller's record has it: the allocation stands (its split is done) */
      b->order = (uint8_t)target;
      b->is_free = 0;
    } else {
      if (h->op >> 62 == OP_FREE && rec && *rec == at + BLK_HDR) *rec = 0; /* the free goes on */
      for (unsigned j = target; j < o; j++) memset(blk_at(a, at + ((uint64_t)1 << j)), 0, sizeof(blk_t));
      b->magic = BLK_MAGIC;
      b->order = (uint8_t)o;
      b->is_free = 1;
    }
    h->op = 0;
    h->op_out = 0;
  }
  memset(h->free_head, 0, sizeof h->free_head);
  h->in_use = h->blocks = 0;
  walk(a, relist, NULL);
}

static int map_fd(cr_arena_t **out, int fd, size_t map_size) {
  void *p = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED) return -errno;
  cr_arena_t *a = calloc(1, sizeof *a);
  if (!a) {
    munmap(p, map_size);
    return -ENOMEM;
  }
  a->base = p;
  a->map_size = map_size;
  a->fd = fd;
  a->hdr = p;
  *out = a;
  return 0;
}

int cr_arena_create(cr_arena_t **out, size_t size) {
  if (size == 0) size = CR_ARENA_DEFAULT_SIZE;
  if (size < CR_ARENA_MIN_SIZE) size = CR_ARENA_MIN_SIZE;
  unsigned max_order = order_for(size);
  if (max_order >= MAX_ORDERS) return CR_EINVAL;
  size_t heap = (size_t)1 << max_order;
  int fd = memfd_create("corral-arena", MFD_CLOEXEC);
  if (fd < 0) return -errno;
  if (ftruncate(fd, (off_t)(CR_PAGE + heap)) < 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  cr_arena_t *a;
  int rc = map_fd(&a, fd, CR_PAGE + heap);
  if (rc < 0) {
    close(fd);
    return rc;
  }
  arena_hdr_t *h = a->hdr;
  h->heap_size = heap;
  h->max_order = max_order;
  pthread_mutexattr_t at;
  pthread_mutexattr_init(&at);
  pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&h->lock, &at);
  pthread_mutexattr_destroy(&at);
  list_push(a, CR_PAGE, max_order);
  h->version = ARENA_VERSION;
  atomic_thread_fence(memory_order_release);
  h->magic = ARENA_MAGIC;
  *out = a;
  return 0;
}

int cr_arena_attach(cr_arena_t **out, int fd) {
  struct stat st;
  if (fstat(fd, &st) < 0) return -errno;
  if ((size_t)st.st_size < CR_PAGE + CR_ARENA_MIN_SIZE) return CR_ECORRUPT;
  cr_arena_t *a;
  int rc = map_fd(&a, fd, (size_t)st.st_size);
  if (rc < 0) return rc;
  arena_hdr_t *h = a->hdr;
  if (h->magic != ARENA_MAGIC || h->version != ARENA_VERSION ||
      h->heap_size + CR_PAGE != (uint64_t)st.st_size) {
    munmap(a->base, a->map_size);
    free(a);
    return CR_ECORRUPT;
  }
  *out = a;
  return 0;
}

void cr_arena_close(cr_arena_t *a) {
  if (!a) return;
  munmap(a->base, a->map_size);
  close(a->fd);
  free(a);
}

int cr_arena_fd(const cr_arena_t *a) { return a->fd; }

int cr_arena_alloc(cr_arena_t *a, size_t size, cr_off_t *off) {
  if (size == 0) return CR_EINVAL;
  if (size > a->hdr->heap_size) return CR_ENOMEM;
  unsigned order = order_for(size + BLK_HDR);
  if (order > a->hdr->max_order) return CR_ENOMEM;
  arena_lock(a);
  unsigned k = order;
  while (k <= a->hdr->max_order && a->hdr->free_head[k] == 0) k++;
  if (k > a->hdr->max_order) {
    arena_unlock(a);
    return CR_ENOMEM;
  }
  uint64_t b = a->hdr->free_head[k];
  /* where the caller records the block, if that is in the arena: zero until
   * the block is its (recover tells a done allocation by it) */
  char *o8 = (char *)off;
  a->hdr->op_out = o8 >= a->base && o8 + sizeof *off <= a->base + a->map_size ? (uint64_t)(o8 - a->base) : 0;
  if (a->hdr->op_out) *off = 0;
  op_set(a->hdr, OP_ALLOC, b, k, order);
  list_remove(a, b);
  while (k > order) { /* split, keeping the lower half (b's header still covers it all) */
    k--;
    list_push(a, b + ((uint64_t)1 << k), k);
  }
  blk_t *blk = blk_at(a, b);
  blk->is_free = 0;
  STEP();
  blk->order = (uint8_t)order; /* now the halves are blocks of their own */
  blk->next = blk->prev = 0;   /* the links were the first user bytes */
  a->hdr->in_use += (uint64_t)1 << order;
  a->hdr->blocks++;
  *off = b + BLK_HDR; /* before we let go: see arena.h */
  STEP();
  op_set(a->hdr, OP_NONE, 0, 0, 0);
  arena_unlock(a);
  return 0;
}

static blk_t *checked_block(cr_arena_t *a, cr_off_t off) {
  if (off < CR_PAGE + BLK_HDR || off >= CR_PAGE + a->hdr->heap_size || (off & 15)) return NULL;
  blk_t *b = blk_at(a, off - BLK_HDR);
  if (b->magic != BLK_MAGIC || b->is_free || b->order < MIN_ORDER || b->order > a->hdr->max_order)
    return NULL;
  return b;
}

static void scrub(cr_arena_t *a, uint64_t b, unsigned order) {
  size_t sz = (size_t)1 << order;
  if (order < PUNCH_ORDER) {
    memset(a->base + b + BLK_HDR, 0, sz - BLK_HDR);
    return;
  }
  memset(a->base + b + BLK_HDR, 0, CR_PAGE - BLK_HDR);
  if (fallocate(a->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(b + CR_PAGE),
                (off_t)(sz - CR_PAGE)) < 0)
    memset(a->base + b + CR_PAGE, 0, sz - CR_PAGE);
}

/* Frees block off; rec: the offset of the word in the arena that records
 * it, cleared in the free's first step under the lock (recover clears it
 * if the free got that far), or 0. */
static void free_block(cr_arena_t *a, cr_off_t off, uint64_t rec) {
  blk_t *blk = checked_block(a, off);
  if (!blk) {
    fprintf(stderr, "corral: cr_arena_free: bad block offset %llu\n", (unsigned long long)off);
    abort();
  }
  unsigned order = blk->order;
  uint64_t b = off - BLK_HDR;
  scrub(a, b, order); /* outside the lock: the block is still ours */
  arena_lock(a);
  a->hdr->op_out = rec;
  op_set(a->hdr, OP_FREE, b, order, order);
  if (rec) {
    *(uint64_t *)(a->base + rec) = 0;
    STEP();
    a->hdr->op_out = 0;
  }
  a->hdr->in_use -= (uint64_t)1 << order;
  a->hdr->blocks--;
  while (order < a->hdr->max_order) {
    uint64_t rel = b - CR_PAGE;
    uint64_t buddy = CR_PAGE + (rel ^ ((uint64_t)1 << order));
    blk_t *bb = blk_at(a, buddy);
    if (bb->magic != BLK_MAGIC || !bb->is_free || bb->order != order) break;
    list_remove(a, buddy);
    uint64_t lower = buddy < b ? buddy : b, upper = buddy < b ? b : buddy;
    op_set(a->hdr, OP_FREE, lower, order + 1, order);
    blk_t *lo = blk_at(a, lower);
    lo->magic = BLK_MAGIC;
    lo->order = (uint8_t)(order + 1); /* covers both halves */
    STEP();
    memset(blk_at(a, upper), 0, sizeof(blk_t)); /* becomes interior of the merged block */
    b = lower;
    order++;
  }
  list_push(a, b, order);
  op_set(a->hdr, OP_NONE, 0, 0, 0);
  arena_unlock(a);
}

void cr_arena_free(cr_arena_t *a, cr_off_t off) {
  if (off) free_block(a, off, 0);
}

void cr_arena_free_rec(cr_arena_t *a, cr_off_t *rec) {
  cr_off_t off = *rec;
  if (!off) return;
  char *r = (char *)rec;
  if (r < a->base + CR_PAGE || r + sizeof *rec > a->base + a->map_size) {
    fprintf(stderr, "corral: cr_arena_free_rec: the record is not in the arena\n");
    abort();
  }
  free_block(a, off, (uint64_t)(r - a->base));
}

void cr_arena_settle(cr_arena_t *a) {
  arena_lock(a);
  arena_unlock(a);
}

size_t cr_arena_block_size(cr_arena_t *a, cr_off_t off) {
  blk_t *blk = checked_block(a, off);
  return blk ? ((size_t)1 << blk->order) - BLK_HDR : 0;
}

void *cr_arena_ptr(const cr_arena_t *a, cr_off_t off) { return off ? a->base + off : NULL; }

cr_off_t cr_arena_off(const cr_arena_t *a, const void *p) {
  return p ? (cr_off_t)((const char *)p - a->base) : 0;
}

int cr_arena_contains(const cr_arena_t *a, cr_off_t off, size_t len) {
  uint64_t end = CR_PAGE + a->hdr->heap_size;
  return off >= CR_PAGE && off <= end && len <= end - off;
}

void cr_arena_stats(cr_arena_t *a, cr_arena_stats_t *st) {
  arena_lock(a);
  st->size = a->hdr->heap_size;
  st->in_use = a->hdr->in_use;
  st->blocks = a->hdr->blocks;
  arena_unlock(a);
  st->objects = atomic_load(&a->hdr->objects);
}

typedef struct {
  cr_arena_block_fn fn;
  void *ud;
} each_t;

static void each_used(cr_arena_t *a, uint64_t b, unsigned order, int is_free, void *ud) {
  each_t *e = ud;
  if (!is_free) e->fn(e->ud, b + BLK_HDR, ((size_t)1 << order) - BLK_HDR);
}

void cr_arena_each_block(cr_arena_t *a, cr_arena_block_fn fn, void *ud) {
  each_t e = {fn, ud};
  arena_lock(a);
  walk(a, each_used, &e);
  arena_unlock(a);
}

_Atomic uint64_t *cr_arena_root(cr_arena_t *a, unsigned which) {
  return which < CR_ARENA_ROOTS ? &a->hdr->roots[which] : NULL;
}

/* ---- shared objects ---------------------------------------------------- */

static const char *const kind_names[CR_OBJ__MAX] = {
  "none",
#define XX(name, tname) tname,
  CR_OBJ_KIND_MAP(XX)
#undef XX
};

const char *cr_obj_kind_name(cr_obj_kind_t kind) {
  return (unsigned)kind < CR_OBJ__MAX ? kind_names[kind] : "unknown";
}

int cr_obj_new(cr_arena_t *a, cr_obj_kind_t kind, size_t size, cr_off_t *off) {
  if (size < sizeof(cr_obj_t) || kind <= CR_OBJ_NONE || kind >= CR_OBJ__MAX) return CR_EINVAL;
  int rc = cr_arena_alloc(a, size, off);
  if (rc < 0) return rc;
  cr_obj_t *o = cr_arena_ptr(a, *off);
  o->kind = kind;
  atomic_store((_Atomic uint32_t *)&o->refs, 1);
  atomic_fetch_add(&a->hdr->objects, 1);
  atomic_store_explicit((_Atomic uint32_t *)&o->magic, CR_OBJ_MAGIC, memory_order_release);
  return 0;
}

int cr_obj_check(cr_arena_t *a, cr_off_t off, cr_obj_kind_t kind) {
  if (!checked_block(a, off)) return CR_EINVAL;
  cr_obj_t *o = cr_arena_ptr(a, off);
  if (atomic_load((_Atomic uint32_t *)&o->magic) != CR_OBJ_MAGIC) return CR_EINVAL;
  if (kind != CR_OBJ_NONE && o->kind != (uint32_t)kind) return CR_EINVAL;
  return 0;
}

void cr_obj_retain(cr_arena_t *a, cr_off_t off) {
  cr_obj_t *o = cr_arena_ptr(a, off);
  atomic_fetch_add((_Atomic uint32_t *)&o->refs, 1);
}

int cr_obj_release(cr_arena_t *a, cr_off_t off, cr_obj_destroy_fn destroy) {
  cr_obj_t *o = cr_arena_ptr(a, off);
  if (atomic_fetch_sub((_Atomic uint32_t *)&o->refs, 1) != 1) return 0;
  if (destroy) destroy(a, off);
  atomic_store((_Atomic uint32_t *)&o->magic, 0);
  atomic_fetch_sub(&a->hdr->objects, 1);
  cr_arena_free(a, off);
  return 1;
}
