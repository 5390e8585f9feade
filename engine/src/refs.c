/* corral engine: the references each process holds (see corral/refs.h).
 *
 * The process table is one arena block found through the arena root
 * CR_ARENA_ROOT_PROCS: CR_REFS_MAX_PROCS slots of (pid, ledger). A slot's
 * pid is 0 when free, SLOT_RESERVED while a fork prepares it, SLOT_REAPING
 * while a reaper empties it; a slot changes hands only by CAS on its pid.
 *
 * A ledger is an open-addressing table of (object offset, count) in an
 * arena block of its own. Only its process writes it while it lives; the
 * reaper reads it once that process is dead, so it needs no lock. It grows
 * by copying into a block twice the size, published with one store into the
 * slot before the old block is freed. */
#define _GNU_SOURCE
#include "engine_int.h"
#include "corral/chan.h"
#include "corral/errors.h"
#include "corral/managed.h"
#include "corral/refs.h"
#include "corral/sync.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define SLOT_RESERVED (-1)
#define SLOT_REAPING  (-2)

typedef struct {
  _Atomic int32_t pid;
  uint32_t pad;
  _Atomic uint64_t ledger; /* offset of its ledger, 0 before the first reference */
} slot_t;

typedef struct {
  slot_t s[CR_REFS_MAX_PROCS];
} proctab_t;

#define TOMB 1 /* a removed entry; no object lives at offset 1 */

typedef struct {
  cr_off_t off; /* 0: empty; TOMB: removed */
  uint32_t count;
  uint32_t pad;
} entry_t;

typedef struct {
  uint32_t cap;  /* entries, a power of two */
  uint32_t used; /* entries not empty (live and removed) */
  uint32_t live;
  uint32_t pad;
  entry_t e[];
} ledger_t;

#define LEDGER_MIN 16u

/* ---- kinds ---------------------------------------------------------------- */

static cr_obj_kind_t kind_of(cr_arena_t *a, cr_off_t off) {
  return (cr_obj_kind_t)((cr_obj_t *)cr_arena_ptr(a, off))->kind;
}

int cr_obj_drop(cr_arena_t *a, cr_off_t off) {
  switch (kind_of(a, off)) {
  case CR_OBJ_QUEUE: return cr_queue_release(a, off);
  case CR_OBJ_PIPE: return cr_pipe_release(a, off);
  case CR_OBJ_MANAGED: return cr_managed_release(a, off);
  case CR_OBJ_LOCK: case CR_OBJ_RLOCK: case CR_OBJ_SEMAPHORE: case CR_OBJ_EVENT:
  case CR_OBJ_CONDITION: case CR_OBJ_BARRIER: case CR_OBJ_VALUE: case CR_OBJ_ARRAY:
    return cr_obj_release(a, off, cr_sync_destroy);
  default: return cr_obj_release(a, off, NULL);
  }
}

static cr_msg_drop_fn msg_drop;

void cr_refs_on_message_drop(cr_msg_drop_fn fn) { msg_drop = fn; }

void cr_refs_message_dropped(cr_arena_t *a, const void *data, size_t len) {
  if (msg_drop) msg_drop(a, data, len);
}

/* ---- the process table ------------------------------------------------------- */

static proctab_t *table(cr_arena_t *a) {
  return cr_arena_ptr(a, atomic_load(cr_arena_root(a, CR_ARENA_ROOT_PROCS)));
}

static slot_t *my_slot(cr_engine_t *e) {
  return e->refs_slot < 0 ? NULL : &table(e->arena)->s[e->refs_slot];
}

static ledger_t *ledger_at(cr_arena_t *a, slot_t *s) {
  return cr_arena_ptr(a, atomic_load(&s->ledger));
}

static void reap_slot(cr_arena_t *a, slot_t *s, int pid, int held, int drop);

/* A process that ended without being reaped by an engine (its parent died
 * first): nothing will ever signal it, and nothing of it runs. */
static int slot_dead(int pid) { return pid > 0 && kill(pid, 0) < 0 && errno == ESRCH; }

/* Claims a free slot (pid 0 -> `as`); when none is free, empties the slot
 * of a process that is gone and takes that. -1 when the table is full. */
static int claim_slot(cr_arena_t *a, int32_t as) {
  proctab_t *t = table(a);
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < CR_REFS_MAX_PROCS; i++) {
      int32_t pid = atomic_load(&t->s[i].pid);
      if (pass == 1 && slot_dead(pid)) {
        reap_slot(a, &t->s[i], pid, 1, 1);
        pid = atomic_load(&t->s[i].pid);
      }
      if (pid == 0 && atomic_compare_exchange_strong(&t->s[i].pid, &pid, as)) return i;
    }
  return -1;
}

int cr__refs_open(cr_engine_t *e, int create) {
  cr_arena_t *a = e->arena;
  _Atomic uint64_t *root = cr_arena_root(a, CR_ARENA_ROOT_PROCS);
  if (create) {
    cr_off_t off;
    int rc = cr_arena_alloc(a, sizeof(proctab_t), &off);
    if (rc < 0) return rc;
    atomic_store(root, off);
  } else if (atomic_load(root) == 0) {
    return CR_ECORRUPT;
  }
  e->refs_slot = claim_slot(a, (int32_t)getpid());
  return e->refs_slot < 0 ? CR_ENOMEM : 0;
}

/* ---- ledgers ----------------------------------------------------------------- */

static uint32_t hash(cr_off_t off, uint32_t cap) {
  return (uint32_t)(((off >> 4) * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

/* The entry for off, or NULL. */
static entry_t *find(ledger_t *l, cr_off_t off) {
  if (!l) return NULL;
  for (uint32_t i = hash(off, l->cap), n = 0; n < l->cap; i = (i + 1) & (l->cap - 1), n++) {
    if (l->e[i].off == off) return &l->e[i];
    if (l->e[i].off == 0) return NULL;
  }
  return NULL;
}

/* Puts a new entry (off not present, a free entry exists). */
static entry_t *insert(ledger_t *l, cr_off_t off) {
  uint32_t i = hash(off, l->cap);
  while (l->e[i].off != 0 && l->e[i].off != TOMB) i = (i + 1) & (l->cap - 1);
  if (l->e[i].off == 0) l->used++;
  l->e[i].off = off;
  l->e[i].count = 0;
  l->live++;
  return &l->e[i];
}

/* A new ledger holding the live entries of `from` (NULL: none) with room
 * for at least `need` live ones at three quarters full. */
static int ledger_copy(cr_arena_t *a, const ledger_t *from, uint32_t need, cr_off_t *out) {
  uint32_t cap = LEDGER_MIN;
  while (cap * 3 < need * 4) cap *= 2;
  int rc = cr_arena_alloc(a, sizeof(ledger_t) + cap * sizeof(entry_t), out);
  if (rc < 0) return rc;
  ledger_t *l = cr_arena_ptr(a, *out);
  l->cap = cap;
  if (from)
    for (uint32_t i = 0; i < from->cap; i++)
      if (from->e[i].off > TOMB) insert(l, from->e[i].off)->count = from->e[i].count;
  return 0;
}

/* Moves the ledger to a block sized for what it holds now (none when it
 * holds nothing), so that a process that once held many handles gives the
 * room back. Left as it is when the arena has no room for the copy. */
static void shrink(cr_arena_t *a, slot_t *s, ledger_t *l) {
  cr_off_t copy = 0, old = atomic_load(&s->ledger);
  if (l->live && ledger_copy(a, l, l->live, &copy) < 0) return;
  atomic_store(&s->ledger, copy);
  cr_arena_free(a, old);
}

int cr_refs_take(cr_engine_t *e, cr_off_t off) {
  slot_t *s = my_slot(e);
  if (!s) return CR_ENOMEM;
  cr_arena_t *a = e->arena;
  ledger_t *l = ledger_at(a, s);
  entry_t *en = find(l, off);
  if (!en) {
    if (!l) { /* the first: allocated into the slot, so a kill leaks no block */
      int rc = ledger_copy(a, NULL, 1, (cr_off_t *)&s->ledger);
      if (rc < 0) return rc;
      l = ledger_at(a, s);
    } else if ((l->used + 1) * 4 > l->cap * 3) {
      cr_off_t grown, old = atomic_load(&s->ledger);
      int rc = ledger_copy(a, l, l->live + 1, &grown);
      if (rc < 0) return rc;
      atomic_store(&s->ledger, grown);
      cr_arena_free(a, old);
      l = cr_arena_ptr(a, grown);
    }
    en = insert(l, off);
  }
  en->count++;
  if (kind_of(a, off) == CR_OBJ_PIPE) cr_pipe_hold(a, off, e->pid);
  return 0;
}

void cr_refs_drop(cr_engine_t *e, cr_off_t off) {
  cr_arena_t *a = e->arena;
  slot_t *s = my_slot(e);
  entry_t *en = s ? find(ledger_at(a, s), off) : NULL;
  if (kind_of(a, off) == CR_OBJ_PIPE) cr_pipe_unhold(a, off, e->pid);
  if (en && --en->count == 0) {
    en->off = TOMB;
    ledger_t *l = ledger_at(a, s);
    if (--l->live == 0 || (l->cap > LEDGER_MIN && l->live * 8 < l->cap)) shrink(a, s, l);
  }
  cr_obj_drop(a, off);
}

size_t cr_refs_count(cr_engine_t *e) {
  slot_t *s = my_slot(e);
  ledger_t *l = s ? ledger_at(e->arena, s) : NULL;
  size_t n = 0;
  if (l)
    for (uint32_t i = 0; i < l->cap; i++)
      if (l->e[i].off > TOMB) n += l->e[i].count;
  return n;
}

/* ---- ends of processes --------------------------------------------------------- */

/* Gives back every reference of the process that had slot s (it has
 * ended, or is this process closing its engine), then frees the slot. Only
 * the caller whose CAS takes the slot does it. `held`: its pipe handles
 * were registered with their pipes (not so for a fork that failed).
 * `drop` 0: the references are another owner's, only forgotten. */
static void reap_slot(cr_arena_t *a, slot_t *s, int pid, int held, int drop) {
  int32_t expect = pid;
  if (!atomic_compare_exchange_strong(&s->pid, &expect, SLOT_REAPING)) return;
  cr_off_t loff = atomic_load(&s->ledger);
  ledger_t *l = cr_arena_ptr(a, loff);
  if (l)
    for (uint32_t i = 0; i < l->cap; i++) {
      cr_off_t off = l->e[i].off;
      uint32_t n = l->e[i].count;
      if (off <= TOMB || n == 0) continue;
      if (held && kind_of(a, off) == CR_OBJ_PIPE) cr_pipe_forget(a, off, pid, (int)n);
      if (held && kind_of(a, off) == CR_OBJ_QUEUE) cr_queue_forget(a, off, pid);
      while (drop && n--) cr_obj_drop(a, off);
    }
  atomic_store(&s->ledger, 0);
  cr_arena_free(a, loff);
  atomic_store(&s->pid, 0);
}

void cr__refs_reap(cr_engine_t *e, int pid, int drop) {
  proctab_t *t = table(e->arena);
  if (!t || pid <= 0) return;
  for (int i = 0; i < CR_REFS_MAX_PROCS; i++)
    if (atomic_load(&t->s[i].pid) == pid) reap_slot(e->arena, &t->s[i], pid, 1, drop);
}

void cr__refs_close(cr_engine_t *e) {
  slot_t *s = my_slot(e);
  if (s) reap_slot(e->arena, s, e->pid, 1, 1);
  e->refs_slot = -1;
}

/* ---- fork ------------------------------------------------------------------------ */

int cr__refs_fork_prepare(cr_engine_t *e, cr__refs_fork_t *f) {
  cr_arena_t *a = e->arena;
  slot_t *mine = my_slot(e);
  f->slot = -1;
  if (!mine) return 0; /* this process records nothing: neither will the child */
  int i = claim_slot(a, SLOT_RESERVED);
  if (i < 0) return CR_ENOMEM;
  ledger_t *l = ledger_at(a, mine);
  cr_off_t copy = 0;
  if (l && l->live) {
    int rc = ledger_copy(a, l, l->live, &copy);
    if (rc < 0) {
      atomic_store(&table(a)->s[i].pid, 0);
      return rc;
    }
    ledger_t *c = cr_arena_ptr(a, copy);
    for (uint32_t k = 0; k < c->cap; k++)
      for (uint32_t n = c->e[k].off > TOMB ? c->e[k].count : 0; n; n--) cr_obj_retain(a, c->e[k].off);
  }
  atomic_store(&table(a)->s[i].ledger, copy);
  f->slot = i;
  return 0;
}

void cr__refs_fork_abort(cr_engine_t *e, cr__refs_fork_t *f) {
  if (f->slot < 0) return;
  slot_t *s = &table(e->arena)->s[f->slot];
  /* No handle was registered with a pipe for the child: forget finds none. */
  reap_slot(e->arena, s, SLOT_RESERVED, 0, 1);
}

void cr__refs_fork_parent(cr_engine_t *e, cr__refs_fork_t *f, int pid) {
  if (f->slot < 0) return;
  int32_t expect = SLOT_RESERVED;
  atomic_compare_exchange_strong(&table(e->arena)->s[f->slot].pid, &expect, pid);
}

void cr__refs_fork_child(cr_engine_t *e, cr__refs_fork_t *f) {
  e->refs_slot = f->slot;
  if (f->slot < 0) return;
  cr_arena_t *a = e->arena;
  slot_t *s = &table(a)->s[f->slot];
  int32_t expect = SLOT_RESERVED;
  atomic_compare_exchange_strong(&s->pid, &expect, (int32_t)e->pid);
  /* The inherited pipe handles are open here now. Until this runs, the
   * references the parent took for them count as in flight, which keeps
   * their ends open. */
  ledger_t *l = ledger_at(a, s);
  if (l)
    for (uint32_t k = 0; k < l->cap; k++)
      if (l->e[k].off > TOMB && kind_of(a, l->e[k].off) == CR_OBJ_PIPE)
        for (uint32_t n = l->e[k].count; n; n--) cr_pipe_hold(a, l->e[k].off, e->pid);
}
