/* corral engine: Semaphore and BoundedSemaphore (see corral/sync.h for the
 * design, in particular how the slots of a holder that died come back).
 *
 * Two words change together when a slot moves: the semaphore's
 * word (the count of free slots, which is the futex word, and the tag of
 * the last change) and the entry of the process that holds it in the
 * holder table (its identity, the slots it holds, and the operation it has
 * under way). No instruction changes both, and a process may die between
 * any two of its instructions. Taking a slot and then recording it left a
 * window where a SIGKILL leaked the slot for good, and on a busy machine
 * kills landed in it: it held system calls (reading /proc for the process's
 * identity on its first acquire, restoring the signal handlers after a
 * blocking wait), where a pending kill takes effect. A release that took
 * the record off before adding to the count, and a process giving back a
 * dead holder's slots, had windows of their own. So a change is made in
 * three steps, none of which leaves a slot unaccounted for:
 *
 *   1. announce: the process writes the operation (take, give, reclaim)
 *      and a fresh ticket into its own entry;
 *   2. change: one compare-and-swap moves the count and puts the tag
 *      (entry, ticket) in the semaphore's word;
 *   3. finish: the entry's count is brought up to date, the operation
 *      cleared.
 *
 * Whoever changes the word next first finishes the record of the change
 * whose tag it is about to overwrite, if its process has not yet (help).
 * So a tag leaves the word only once its record is done, and the process
 * that reclaims an entry whose process ended can tell, from the word
 * alone, whether an operation left pending there happened: it did if the
 * word still carries its tag, it did not if the entry still shows it
 * pending and the word carries another tag (settle).
 *
 * An entry is claimed by compare-and-swap of its identity from 0 and
 * freed by its process once it holds nothing; only that process announces
 * on it. An entry whose process ended is reclaimed by the process that
 * marks it RECLAIMING | own identity; if that one dies in turn, the next
 * takes the entry over and carries on. A process's calls on one semaphore
 * are not concurrent (one thread per process uses the engine). */
#define _GNU_SOURCE
#include "corral/sync.h"
#include "corral/engine.h"
#include "corral/errors.h"
#include "sync_int.h"

#define SEM_BOUNDED 1u
#define SLICE_FIRST 0.05
#define SLICE_MAX   1.0

/* Operations an entry may have under way. */
enum { OP_NONE, OP_TAKE, OP_GIVE, OP_RECLAIM };

/* A tag: (entry index + 1) << TICKET_BITS | ticket; 0 for a change that no
 * entry records (a release by a non-holder, a hold the full table cannot
 * record). An entry's tickets go up by one per operation announced. */
#define TICKET_BITS 25
#define TICKET_MASK ((1u << TICKET_BITS) - 1)
_Static_assert(CR_SEM_HOLDERS < (1u << (32 - TICKET_BITS)), "entry index must fit in a tag");

/* The identity of an entry being reclaimed: this bit | the reclaimer's
 * identity (a pid never reaches bit 31). */
#define RECLAIMING (1ull << 63)

/* the semaphore's word */
#define W_FREE(w)         ((uint32_t)(w))
#define W_TAG(w)          ((uint32_t)((w) >> 32))
#define W_MAKE(free, tag) ((uint64_t)(tag) << 32 | (uint32_t)(free))
/* an entry's state: slots held in the low half; ticket << 2 | operation in
 * the high half (the ticket stays when the operation is cleared) */
#define ST_N(st)              ((uint32_t)(st))
#define ST_OP(st)             ((uint32_t)((st) >> 32) & 3u)
#define ST_TICKET(st)         ((uint32_t)((st) >> 34))
#define ST_MAKE(n, ticket, op) ((uint64_t)((uint32_t)(ticket) << 2 | (op)) << 32 | (uint32_t)(n))

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FREE_HALF 0
#else
#define FREE_HALF 1
#endif

typedef struct {
  _Atomic uint64_t id; /* cr__self_id of the holder; 0 free; RECLAIMING | id */
  _Atomic uint64_t st; /* slots held, operation under way (ST_*) */
} holder_t;

typedef struct {
  cr_obj_t hdr; /* flags: SEM_BOUNDED */
  union {
    _Atomic uint64_t all;     /* free slots and the tag of the last change (W_*) */
    _Atomic uint32_t half[2]; /* half[FREE_HALF] is the free count: the futex word */
  } w;
  _Atomic uint32_t waiters;
  uint32_t max;
  holder_t holders[CR_SEM_HOLDERS];
} csem_t;

static csem_t *sem_at(cr_arena_t *a, cr_off_t off) { return cr_arena_ptr(a, off); }

static _Atomic uint32_t *free_word(csem_t *s) { return &s->w.half[FREE_HALF]; }

int cr_sem_new(cr_arena_t *a, long value, int bounded, cr_off_t *off) {
  if (value < 0 || value > CR_SEM_MAX) return CR_EINVAL;
  int rc = cr_obj_new(a, CR_OBJ_SEMAPHORE, sizeof(csem_t), off);
  if (rc < 0) return rc;
  csem_t *s = sem_at(a, *off);
  s->hdr.flags = bounded ? SEM_BOUNDED : 0;
  s->max = bounded ? (uint32_t)value : CR_SEM_MAX;
  atomic_store(&s->w.all, W_MAKE(value, 0));
  return 0;
}

/* ---- the three steps ----------------------------------------------------- */

static uint32_t tag_of(csem_t *s, holder_t *h, uint32_t ticket) {
  return (uint32_t)(h - s->holders + 1) << TICKET_BITS | ticket;
}

/* Entry state st once its operation is done. */
static uint64_t completed(uint64_t st) {
  uint32_t n = ST_N(st);
  switch (ST_OP(st)) {
    case OP_TAKE: n++; break;
    case OP_GIVE: n--; break;
    case OP_RECLAIM: n = 0; break;
  }
  return ST_MAKE(n, ST_TICKET(st), OP_NONE);
}

/* Step 1 on h, which the caller owns (its own entry, or one it reclaims)
 * and which has no operation under way: nobody else writes it now. Sets
 * *pending to the entry's new state; returns the tag for step 2. (A plain
 * store: step 2's compare-and-swap publishes it with the tag.) */
static uint32_t announce(csem_t *s, holder_t *h, int op, uint64_t *pending) {
  uint64_t st = atomic_load_explicit(&h->st, memory_order_relaxed);
  uint32_t ticket = (ST_TICKET(st) + 1) & TICKET_MASK;
  *pending = ST_MAKE(ST_N(st), ticket, op);
  atomic_store_explicit(&h->st, *pending, memory_order_release);
  return tag_of(s, h, ticket);
}

/* Step 3 by the caller of announce, once step 2 happened. A plain store:
 * a helper may complete the same operation at the same time, but only
 * from `pending` and to the same state. */
static void finish(holder_t *h, uint64_t pending) {
  atomic_store_explicit(&h->st, completed(pending), memory_order_release);
}

/* Step 3 of the operation that `tag` names, if it is still under way
 * (whoever calls it: the owner, or anyone about to overwrite the tag). */
static void help(csem_t *s, uint32_t tag) {
  if (!tag) return;
  holder_t *h = &s->holders[(tag >> TICKET_BITS) - 1];
  uint32_t ticket = tag & TICKET_MASK;
  uint64_t st = atomic_load(&h->st);
  while (ST_OP(st) != OP_NONE && ST_TICKET(st) == ticket)
    if (atomic_compare_exchange_weak(&h->st, &st, completed(st))) return;
}

/* Takes back an announced operation whose step 2 did not happen (no tag of
 * it ever reached the word, so nobody else touches the entry). */
static void withdraw(holder_t *h, uint64_t pending) {
  atomic_store_explicit(&h->st, ST_MAKE(ST_N(pending), ST_TICKET(pending), OP_NONE),
                        memory_order_release);
}

/* Step 2: moves the free count for `op` and tags the word with `tag`,
 * after step 3 of the change whose tag it overwrites. Returns the slots
 * moved: for a take or a give 1, or 0 (none free / a bounded semaphore
 * full: nothing changed); for a reclaim of n slots, up to n (never past
 * the maximum; the word is tagged even when 0). */
static uint32_t change(csem_t *s, int op, uint32_t n, uint32_t tag) {
  uint64_t w = atomic_load(&s->w.all);
  for (;;) {
    uint32_t f = W_FREE(w), room = s->max - f, k;
    if (op == OP_TAKE)
      k = f > 0;
    else if (op == OP_GIVE)
      k = room > 0;
    else
      k = n < room ? n : room;
    if (k == 0 && op != OP_RECLAIM) return 0;
    help(s, W_TAG(w));
    uint32_t nf = op == OP_TAKE ? f - 1 : f + k;
    if (atomic_compare_exchange_weak(&s->w.all, &w, W_MAKE(nf, tag))) return k;
  }
}

/* ---- the holder table ---------------------------------------------------- */

static unsigned first_entry(uint64_t me) { return (unsigned)(me >> 32) % CR_SEM_HOLDERS; }

/* This process's entry (id `me`), or NULL. */
static holder_t *mine(csem_t *s, uint64_t me) {
  unsigned start = first_entry(me);
  for (unsigned i = 0; i < CR_SEM_HOLDERS; i++) {
    holder_t *h = &s->holders[(start + i) % CR_SEM_HOLDERS];
    if (atomic_load_explicit(&h->id, memory_order_relaxed) == me) return h;
  }
  return NULL;
}

/* This process's entry, claimed if it has none; NULL when the table is
 * full. */
static holder_t *claim(csem_t *s, uint64_t me) {
  unsigned start = first_entry(me);
  for (int pass = 0; pass < 2; pass++) {
    holder_t *free_h = NULL;
    for (unsigned i = 0; i < CR_SEM_HOLDERS; i++) {
      holder_t *h = &s->holders[(start + i) % CR_SEM_HOLDERS];
      uint64_t id = atomic_load_explicit(&h->id, memory_order_relaxed);
      if (id == me) return h;
      if (id == 0 && !free_h) free_h = h;
    }
    if (!free_h) return NULL;
    uint64_t zero = 0;
    if (atomic_compare_exchange_strong(&free_h->id, &zero, me)) return free_h;
  }
  return NULL;
}

/* Frees this process's entry if it holds nothing (only its process
 * writes a live process's entry). */
static void unclaim(holder_t *h) {
  if (ST_N(atomic_load_explicit(&h->st, memory_order_relaxed)) == 0)
    atomic_store_explicit(&h->id, 0, memory_order_release);
}

/* Takes a free slot for this process (id `me`), recorded in its entry
 * (untracked when the table is full). 1 when taken, 0 when none is free;
 * the entry is as it was in that case. */
static int take(csem_t *s, uint64_t me) {
  if (W_FREE(atomic_load(&s->w.all)) == 0) return 0;
  holder_t *h = claim(s, me);
  if (!h) return (int)change(s, OP_TAKE, 0, 0);
  uint64_t pending;
  uint32_t tag = announce(s, h, OP_TAKE, &pending);
  if (change(s, OP_TAKE, 0, tag)) {
    finish(h, pending);
    return 1;
  }
  withdraw(h, pending);
  unclaim(h);
  return 0;
}

/* The operation a process that ended left under way on h: done when the
 * word still carries its tag (step 2 happened), else dropped (step 2 never
 * happened: had it, whoever overwrote the tag did step 3 first). */
static void settle(csem_t *s, holder_t *h) {
  uint64_t st = atomic_load(&h->st);
  while (ST_OP(st) != OP_NONE) {
    int done = W_TAG(atomic_load(&s->w.all)) == tag_of(s, h, ST_TICKET(st));
    uint64_t to = done ? completed(st) : ST_MAKE(ST_N(st), ST_TICKET(st), OP_NONE);
    if (atomic_compare_exchange_weak(&h->st, &st, to)) return;
  }
}

/* Gives back the slots recorded in h, whose process ended; the caller has
 * marked it RECLAIMING | its own id. Returns how many came back. */
static uint32_t reclaim(csem_t *s, holder_t *h) {
  settle(s, h);
  uint64_t pending;
  uint32_t n = ST_N(atomic_load(&h->st));
  if (n == 0) return 0;
  uint32_t tag = announce(s, h, OP_RECLAIM, &pending);
  uint32_t k = change(s, OP_RECLAIM, n, tag);
  finish(h, pending);
  return k;
}

int cr_sem_recover(cr_arena_t *a, cr_off_t off) {
  csem_t *s = sem_at(a, off);
  uint64_t me = cr__self_id();
  uint32_t total = 0;
  for (unsigned i = 0; i < CR_SEM_HOLDERS; i++) {
    holder_t *h = &s->holders[i];
    uint64_t id = atomic_load(&h->id);
    /* a holder, or a reclaimer that died before it was done */
    uint64_t owner = id & ~RECLAIMING;
    if (id == 0 || owner == me || cr__id_alive(owner)) continue;
    if (!atomic_compare_exchange_strong(&h->id, &id, RECLAIMING | me)) continue;
    total += reclaim(s, h);
    atomic_store(&h->id, 0);
  }
  if (total && atomic_load(&s->waiters)) cr__futex_wake(free_word(s), (int)total);
  return (int)total;
}

int cr_sem_acquire(cr_arena_t *a, cr_off_t off, double timeout) {
  csem_t *s = sem_at(a, off);
  /* before any slot is taken: the first call in a process reads /proc */
  uint64_t me = cr__self_id();
  if (take(s, me)) return 0;
  if (timeout == 0) return cr_sem_recover(a, off) > 0 && take(s, me) ? 0 : CR_ETIMEDOUT;
  cr__deadline_t d, scan, sd;
  cr__deadline_set(&d, timeout);
  cr__spin_while(free_word(s), 0, &(cr__spin_t){0});
  /* Dead holders are looked for every `slice` seconds of waiting, woken
   * or not (a waiter woken often, by releases others win or by SIGCHLD,
   * still looks), less often while nothing is found. */
  double slice = SLICE_FIRST;
  cr__deadline_set(&scan, slice);
  int rc, intr_on = 0;
  for (;;) {
    if (take(s, me)) {
      rc = 0;
      break;
    }
    if (cr__deadline_expired(&d)) {
      rc = CR_ETIMEDOUT;
      break;
    }
    if (cr__deadline_expired(&scan)) {
      if (cr_sem_recover(a, off) > 0) continue;
      slice = slice * 2 > SLICE_MAX ? SLICE_MAX : slice * 2;
      cr__deadline_set(&scan, slice);
    }
    if (!intr_on) {
      cr_intr_begin();
      intr_on = 1;
    }
    cr__deadline_min(&sd, &d, cr__deadline_left(&scan));
    atomic_fetch_add(&s->waiters, 1);
    int r = cr__futex_wait(free_word(s), 0, &sd);
    atomic_fetch_sub(&s->waiters, 1);
    if (r == CR_EINTR) {
      rc = CR_EINTR;
      break;
    }
  }
  if (intr_on) cr_intr_end();
  return rc;
}

int cr_sem_release(cr_arena_t *a, cr_off_t off) {
  csem_t *s = sem_at(a, off);
  uint64_t me = cr__self_id();
  holder_t *h = mine(s, me);
  if (h && ST_N(atomic_load_explicit(&h->st, memory_order_relaxed)) == 0)
    h = NULL; /* holds nothing: a signal */
  uint64_t pending = 0;
  uint32_t tag = h ? announce(s, h, OP_GIVE, &pending) : 0;
  if (!change(s, OP_GIVE, 0, tag)) {
    if (h) withdraw(h, pending);
    return CR_EOVERFLOW;
  }
  if (h) {
    finish(h, pending);
    unclaim(h);
  }
  if (atomic_load(&s->waiters)) cr__futex_wake(free_word(s), 1);
  return 0;
}

int cr_sem_value(cr_arena_t *a, cr_off_t off) {
  return (int)W_FREE(atomic_load(&sem_at(a, off)->w.all));
}

int cr_sem_is_bounded(cr_arena_t *a, cr_off_t off) {
  return (sem_at(a, off)->hdr.flags & SEM_BOUNDED) != 0;
}
