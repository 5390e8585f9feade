/* corral engine: the queue (design and contracts in corral/chan.h).
 *
 * Banners: layout / message blocks and their cache / the ring / the
 * overflow list / put and get / joinable / lifetime. */
#define _GNU_SOURCE
#include "chan_int.h"
#include "corral/refs.h"
#include "corral/engine.h"
#include "corral/errors.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* ---- layout ------------------------------------------------------------------ */

#define RBIT      0x80000000u           /* in a slot's holder: a reader */
#define ORPHAN    RBIT                  /* a slot's holder: a reader that died */
#define LEN_BLOCK (UINT64_C(1) << 63)   /* the message is in a block at u.off */
#define LEN_TASK  (UINT64_C(1) << 62)   /* joinable: counted as unfinished */
#define LEN_DONE  (UINT64_C(1) << 61)   /* delivered: the reader is letting go of the slot */
#define LEN_MASK  (LEN_DONE - 1)

#define CACHE_MIN_ORDER 6u
#define CACHE_MAX_ORDER 24u /* blocks up to 16 MiB are cached */
#define CACHE_ORDERS    (CACHE_MAX_ORDER - CACHE_MIN_ORDER + 1)

#define WAIT_SLICE 0.2 /* seconds; see "Killed processes" in chan.h */

typedef struct {
  _Atomic uint64_t word; /* seq << 32 | holder */
  uint64_t len;          /* LEN_* flags | length; owned by the slot's holder */
  union {
    unsigned char data[CR_QUEUE_INLINE];
    uint64_t off;
  } u;
} slot_t;

typedef struct {
  cr_obj_t hdr;
  uint32_t nslots;
  uint32_t qflags;
  int64_t maxsize;
  _Atomic uint32_t closed;
#ifdef CORRAL_TESTING
  _Atomic uint32_t test_parked; /* processes stopped at a park point */
#else
  uint32_t spare; /* the same layout either way */
#endif
  char pad0[64 - 40];
  _Atomic uint64_t head; /* producers' line */
  char pad1[56];
  _Atomic uint64_t tail; /* consumers' line */
  _Atomic uint32_t orphan_gen;  /* moved each time slots are marked orphans */
  _Atomic uint32_t orphan_done; /* the orphan_gen a get last found none at */
  char pad2[48];
  _Atomic uint32_t get_ev; /* getters sleep here; producers notify */
  _Atomic uint32_t put_ev; /* putters sleep here; consumers notify */
  _Atomic uint32_t join_ev;
  uint32_t pad3;
  _Atomic int64_t unfinished;
  _Atomic uint64_t ovf_count;
  char pad4[64 - 32];
  pthread_mutex_t ovf_lock; /* robust, process-shared */
  uint64_t ovf_head, ovf_tail;
  uint64_t ovf_pending; /* the block being linked or unlinked under ovf_lock */
  pthread_mutex_t cache_lock; /* robust, process-shared */
  /* The block moving between a record and the cache under cache_lock:
   * kind << 62 | size class << 48 | block, and the record's offset. */
  uint64_t cache_op, cache_rec;
  uint64_t cache_top[CACHE_ORDERS];
  uint32_t cache_n[CACHE_ORDERS];
} queue_t;

#define SLOTS_AT ((sizeof(queue_t) + 63) & ~(size_t)63)

_Static_assert(sizeof(slot_t) == 64, "a slot is one cache line");
_Static_assert(offsetof(queue_t, head) % 64 == 0, "head on its own line");
_Static_assert(offsetof(queue_t, tail) - offsetof(queue_t, head) == 64, "tail on its own line");

/* A message block: [next][len][bytes]; `next` links the overflow list and
 * the cache stacks. */
typedef struct {
  uint64_t next;
  uint64_t len;
} mblk_t;

static queue_t *qp(cr_arena_t *a, cr_off_t q) { return cr_arena_ptr(a, q); }
static slot_t *slots(queue_t *q) { return (slot_t *)((char *)q + SLOTS_AT); }
static slot_t *slot_for(queue_t *q, uint64_t pos) { return &slots(q)[pos % q->nslots]; }
static uint64_t word(uint64_t seq, uint32_t holder) { return ((uint64_t)(uint32_t)seq << 32) | holder; }
/* Sequences are doubled tickets, so that "published for p" (2p+1) never
 * equals "free for the next lap" (2(p+nslots)), even with one slot. */
static uint64_t seq_free(uint64_t p) { return 2 * p; }
static uint64_t seq_full(uint64_t p) { return 2 * p + 1; }
static uint32_t w_seq(uint64_t w) { return (uint32_t)(w >> 32); }
static uint32_t w_holder(uint64_t w) { return (uint32_t)w; }

/* Park points (chan.h, test hooks): only in a testing build; elsewhere
 * park() is nothing at all. */
#ifdef CORRAL_TESTING
static int park_where; /* this process only */

static void park(queue_t *q, int where) {
  if (park_where != where) return;
  atomic_fetch_add(&q->test_parked, 1);
  for (;;) pause();
}

void cr_queue_test_park(int where) { park_where = where; }

uint32_t cr_queue_test_parked(cr_arena_t *a, cr_off_t q) { return atomic_load(&qp(a, q)->test_parked); }
#else
#define park(q, where) ((void)0)
#endif

/* Moves a ticket counter from *pos to *pos+1 if it is still there; leaves
 * *pos at the counter's current value. */
static void advance(_Atomic uint64_t *ctr, uint64_t *pos) {
  uint64_t expect = *pos;
  if (atomic_compare_exchange_strong(ctr, &expect, expect + 1)) *pos = expect + 1;
  else *pos = expect;
}

/* ---- message blocks and their cache --------------------------------------------- */

static unsigned order_of_size(size_t blk_size) { /* blk_size = 2^o - 16 */
  unsigned o = 0;
  size_t s = blk_size + 16;
  while (((size_t)1 << o) < s) o++;
  return o;
}

static unsigned cache_cap(unsigned order) {
  return order <= 12 ? 64 : order <= 16 ? 16 : order <= 21 ? 4 : 2;
}

/* Where a message block is, at every step: recorded in one word of the
 * queue's memory (a slot's u.off, ovf_pending), on a cache stack, or in
 * the arena. A block moves between a record and the cache or the arena in
 * one step as far as a kill is concerned: the cache and the arena each
 * write, under their lock, which block they move and the record's offset
 * before they start (cache_op, the arena's op word), and whoever takes a
 * dead holder's lock over settles the move from where the block is found.
 * So a record of a dead process is read only once both are settled
 * (settle), and then names its block or 0. */
enum { CACHE_TAKE = 1, CACHE_GIVE = 2 };

#define OFF48(x) ((x) & ((UINT64_C(1) << 48) - 1))

static cr_off_t *rec_at(cr_arena_t *a, uint64_t off) { return cr_arena_ptr(a, off); }

/* Locks the cache; after a holder's death, settles the move it was making
 * (a block taken is the record's once the record names it; a block given
 * is the cache's once it tops its stack) and recounts the stacks. */
static void cache_lock(cr_arena_t *a, queue_t *q) {
  if (pthread_mutex_lock(&q->cache_lock) != EOWNERDEAD) return;
  uint64_t op = q->cache_op;
  if (op) {
    unsigned i = (unsigned)(op >> 48) & 0xffu;
    cr_off_t b = OFF48(op), *rec = rec_at(a, q->cache_rec);
    if (op >> 62 == CACHE_TAKE && *rec == b && q->cache_top[i] == b)
      q->cache_top[i] = ((mblk_t *)cr_arena_ptr(a, b))->next;
    else if (op >> 62 == CACHE_GIVE && q->cache_top[i] == b && *rec == b)
      *rec = 0;
    q->cache_op = 0;
  }
  for (unsigned i = 0; i < CACHE_ORDERS; i++) {
    uint32_t n = 0;
    for (cr_off_t b = q->cache_top[i]; b; b = ((mblk_t *)cr_arena_ptr(a, b))->next) n++;
    q->cache_n[i] = n;
  }
  pthread_mutex_consistent(&q->cache_lock);
}

/* Settles the moves of processes that died moving a block, in the cache
 * and in the arena (see above): to be done before a dead process's record
 * is read. */
static void settle(cr_arena_t *a, queue_t *q) {
  cache_lock(a, q);
  pthread_mutex_unlock(&q->cache_lock);
  cr_arena_settle(a);
}

#define STEP() atomic_signal_fence(memory_order_seq_cst)

/* Takes a block with room for `len` bytes after its header into the
 * record *rec (0 until then; in the queue's memory): from the cache when
 * one of the right size class is there, else from the arena. Its length
 * word is 0 by the time the record names it. 0 or CR_ENOMEM (*rec 0). */
static int block_get(cr_arena_t *a, queue_t *q, size_t len, cr_off_t *rec) {
  size_t need = sizeof(mblk_t) + len;
  unsigned o = order_of_size(need);
  if (o < CACHE_MIN_ORDER) o = CACHE_MIN_ORDER;
  if (o <= CACHE_MAX_ORDER) {
    unsigned i = o - CACHE_MIN_ORDER;
    cache_lock(a, q);
    cr_off_t b = q->cache_top[i];
    if (b) {
      mblk_t *m = cr_arena_ptr(a, b);
      q->cache_rec = cr_arena_off(a, rec);
      STEP();
      q->cache_op = (uint64_t)CACHE_TAKE << 62 | (uint64_t)i << 48 | b;
      STEP();
      m->len = 0;
      STEP();
      *rec = b; /* the record's from here */
      STEP();
      park(q, CR_QUEUE_PARK_TAKE);
      q->cache_top[i] = m->next;
      q->cache_n[i]--;
      STEP();
      q->cache_op = 0;
      pthread_mutex_unlock(&q->cache_lock);
      return 0;
    }
    pthread_mutex_unlock(&q->cache_lock);
  }
  return cr_arena_alloc(a, need, rec);
}

/* Gives back the block that the record *rec names (0: nothing), and
 * clears the record: to the cache while its size class has room, else to
 * the arena. */
static void block_put(cr_arena_t *a, queue_t *q, cr_off_t *rec) {
  cr_off_t b = *rec;
  if (!b) return;
  unsigned o = order_of_size(cr_arena_block_size(a, b));
  if (o >= CACHE_MIN_ORDER && o <= CACHE_MAX_ORDER) {
    unsigned i = o - CACHE_MIN_ORDER;
    cache_lock(a, q);
    if (q->cache_n[i] < cache_cap(o)) {
      q->cache_rec = cr_arena_off(a, rec);
      STEP();
      q->cache_op = (uint64_t)CACHE_GIVE << 62 | (uint64_t)i << 48 | b;
      STEP();
      ((mblk_t *)cr_arena_ptr(a, b))->next = q->cache_top[i];
      STEP();
      q->cache_top[i] = b; /* the cache's from here */
      q->cache_n[i]++;
      STEP();
      park(q, CR_QUEUE_PARK_RETURN);
      *rec = 0;
      STEP();
      q->cache_op = 0;
      pthread_mutex_unlock(&q->cache_lock);
      return;
    }
    pthread_mutex_unlock(&q->cache_lock);
  }
  cr_arena_free_rec(a, rec);
}

static void cache_drain(cr_arena_t *a, queue_t *q) {
  for (unsigned i = 0; i < CACHE_ORDERS; i++) {
    cr_off_t off = q->cache_top[i];
    while (off) {
      cr_off_t next = ((mblk_t *)cr_arena_ptr(a, off))->next;
      cr_arena_free(a, off);
      off = next;
    }
    q->cache_top[i] = 0;
  }
}

/* ---- the ring ------------------------------------------------------------------------- */

/* A message being put: its bytes in up to two parts (a short one in head
 * alone). */
typedef struct {
  const void *head, *body;
  size_t hlen, blen, len;
} msg_t;

/* Writes a message's bytes and then its length into block b. */
static void msg_copy(mblk_t *b, const void *head, size_t hlen, const void *body, size_t blen) {
  memcpy((char *)b + sizeof *b, head, hlen);
  if (blen) memcpy((char *)b + sizeof *b + hlen, body, blen);
  atomic_signal_fence(memory_order_seq_cst);
  b->len = hlen + blen;
}

static void task_undo(queue_t *q);

/* Tries to place a message in the ring: 0, CR_EFULL when the slot for the
 * next ticket still holds an older message, or CR_ENOMEM. A short message
 * travels in the slot. A long one goes into a block taken once the slot is
 * ours and recorded in it by the allocator itself (LEN_BLOCK, with length 0
 * while it is being filled), so that a producer killed at any point leaves
 * its block where skip_dead_writers finds it. A block that cannot be had leaves the
 * slot delivered-empty (LEN_DONE), which readers step over. */
static int ring_put(cr_arena_t *a, queue_t *q, const msg_t *m) {
  uint64_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);
  uint32_t me = (uint32_t)cr__chan_self();
  for (;;) {
    slot_t *s = slot_for(q, pos);
    uint64_t w = atomic_load_explicit(&s->word, memory_order_acquire);
    int32_t d = (int32_t)(w_seq(w) - (uint32_t)seq_free(pos));
    if (d == 0 && w_holder(w) == 0) {
      if (!atomic_compare_exchange_weak(&s->word, &w, word(seq_free(pos), me))) continue;
      uint64_t p2 = pos;
      advance(&q->head, &p2);
      /* the length left by the slot's last lap goes at once: a skip of this
       * slot reads ours (LEN_TASK: it undoes the count) */
      uint64_t task = q->qflags & CR_QUEUE_JOINABLE ? LEN_TASK : 0;
      s->len = task;
      if (task) atomic_fetch_add(&q->unfinished, 1);
      park(q, CR_QUEUE_PARK_PUT);
      int rc = 0;
      if (m->len > CR_QUEUE_INLINE) {
        /* the slot names its block (0 until there is one) from the start */
        s->u.off = 0;
        atomic_signal_fence(memory_order_seq_cst);
        s->len = LEN_BLOCK | task;
        atomic_signal_fence(memory_order_seq_cst);
        if ((rc = block_get(a, q, m->len, &s->u.off)) == 0) { /* recorded as it is taken */
          atomic_signal_fence(memory_order_seq_cst);
          msg_copy(cr_arena_ptr(a, s->u.off), m->head, m->hlen, m->body, m->blen);
          atomic_signal_fence(memory_order_seq_cst);
          s->len = m->len | LEN_BLOCK | task;
        } else {
          s->len = LEN_DONE;
          if (task) task_undo(q);
        }
      } else {
        memcpy(s->u.data, m->head, m->len);
        s->len = m->len | task;
      }
      atomic_store_explicit(&s->word, word(seq_full(pos), 0), memory_order_release);
      return rc;
    }
    if (d < 0) { /* an older message is still there: full, unless head moved */
      uint64_t h = atomic_load(&q->head);
      if (h == pos) return CR_EFULL;
      pos = h;
      continue;
    }
    advance(&q->head, &pos); /* claimed by another producer, or head is stale */
  }
}

/* Frees the slot s, which we hold as reader and whose message is
 * delivered (LEN_DONE), for ticket `pos` + nslots. */
static void slot_release(queue_t *q, slot_t *s, uint64_t next_seq) {
  atomic_store_explicit(&s->word, word(next_seq, 0), memory_order_release);
  cr__ev_notify(&q->put_ev);
}

/* Delivers the message in slot s, which we hold as reader, and frees the
 * slot. Once the sink is done the slot says so (LEN_DONE, with LEN_BLOCK
 * while it still records the block), then the message's references are
 * dropped (if the sink took its own), its block given back (block_put
 * clears the record) and the slot freed: a reader that dies at any point
 * leaves an intact message, a delivered one whose slot the next reader
 * gives back and frees (take_orphan), or a free slot; only a death inside
 * the references' drop leaks the ones not dropped yet. */
static int slot_consume(cr_arena_t *a, queue_t *q, slot_t *s, uint64_t next_seq,
                        cr_chan_sink_fn sink, void *ud) {
  uint64_t len = s->len;
  cr_off_t blk = len & LEN_BLOCK ? s->u.off : 0;
  const void *p = blk ? (const void *)((const char *)cr_arena_ptr(a, blk) + sizeof(mblk_t)) : (const void *)s->u.data;
  size_t n = (size_t)(len & LEN_MASK);
  int rc = sink ? sink(ud, p, n) : 0;
  park(q, CR_QUEUE_PARK_GET);
  char copy[CR_QUEUE_INLINE]; /* an inline message's bytes, for the drop once the slot says done */
  if (rc == CR_CHAN_SINK_DROP && !blk) {
    memcpy(copy, p, n);
    p = copy;
  }
  s->len = LEN_DONE | (len & LEN_BLOCK);
  atomic_signal_fence(memory_order_seq_cst);
  park(q, CR_QUEUE_PARK_GIVE);
  if (rc == CR_CHAN_SINK_DROP) cr_refs_message_dropped(a, p, n);
  if (blk) block_put(a, q, &s->u.off);
  slot_release(q, s, next_seq);
  return rc < 0 ? rc : 0;
}

#define RING_EMPTY 1 /* nothing at tail */
#define RING_BUSY  2 /* a producer holds the slot at tail */

/* Delivers the oldest orphan, a message whose reader died holding it: it
 * is older than every message from tail on, so it comes first. 0
 * (delivered, or the sink's error; peek: there is one) or RING_EMPTY. */
static int take_orphan(cr_arena_t *a, queue_t *q, cr_chan_sink_fn sink, void *ud, int peek) {
  uint32_t me = (uint32_t)cr__chan_self() | RBIT;
  for (;;) {
    /* A held slot's sequence is 2 ticket + 1, less than a lap behind tail:
     * the oldest is the farthest behind. */
    uint32_t now = (uint32_t)seq_full(atomic_load(&q->tail));
    slot_t *best = NULL;
    uint64_t bw = 0;
    for (uint32_t i = 0; i < q->nslots; i++) {
      uint64_t w = atomic_load(&slots(q)[i].word);
      if (w_holder(w) != ORPHAN || (best && now - w_seq(w) <= now - w_seq(bw))) continue;
      best = &slots(q)[i];
      bw = w;
    }
    if (!best) return RING_EMPTY;
    if (peek) return 0;
    if (!atomic_compare_exchange_strong(&best->word, &bw, word(w_seq(bw), me))) continue;
    /* seq is 2 ticket + 1; the slot is next free at 2 (ticket + nslots) */
    uint64_t next = (uint64_t)(uint32_t)(w_seq(bw) - 1u + 2u * q->nslots);
    if (best->len & LEN_DONE) { /* delivered: its reader died letting go */
      settle(a, q);
      if (best->len & LEN_BLOCK) block_put(a, q, &best->u.off); /* (0: it was given back) */
      slot_release(q, best, next);
      continue;
    }
    return slot_consume(a, q, best, next, sink, ud);
  }
}

/* Marks as orphans the slots held by reader `pid` (0: by any reader), if
 * it no longer runs, so that the next get delivers them first. (A pid that
 * runs again is another process: its slot is its own.) Returns how many
 * it marked. */
static int mark_orphans(queue_t *q, int pid) {
  int n = 0;
  for (uint32_t i = 0; i < q->nslots; i++) {
    slot_t *s = &slots(q)[i];
    uint64_t w = atomic_load(&s->word);
    uint32_t h = w_holder(w);
    if (!(h & RBIT) || h == ORPHAN || (pid && h != ((uint32_t)pid | RBIT))) continue;
    if (cr__chan_pid_alive((int)(h & ~RBIT))) continue;
    if (atomic_compare_exchange_strong(&s->word, &w, word(w_seq(w), ORPHAN))) n++;
  }
  if (n) {
    atomic_fetch_add(&q->orphan_gen, 1);
    cr__ev_notify(&q->get_ev);
  }
  return n;
}

/* Takes the oldest message: an orphan, else the one at tail. 0 (or the
 * sink's error), RING_EMPTY, or RING_BUSY. peek: only report. */
static int ring_get(cr_arena_t *a, queue_t *q, cr_chan_sink_fn sink, void *ud, int peek) {
  uint64_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
  uint32_t gen = atomic_load_explicit(&q->orphan_gen, memory_order_acquire);
  if (gen != atomic_load_explicit(&q->orphan_done, memory_order_relaxed)) {
    int rc = take_orphan(a, q, sink, ud, peek);
    if (rc != RING_EMPTY) return rc;
    atomic_store(&q->orphan_done, gen); /* none left as of gen */
    pos = atomic_load(&q->tail);
  }
  uint32_t me = (uint32_t)cr__chan_self() | RBIT;
  for (;;) {
    slot_t *s = slot_for(q, pos);
    uint64_t w = atomic_load_explicit(&s->word, memory_order_acquire);
    int32_t d = (int32_t)(w_seq(w) - (uint32_t)seq_full(pos));
    if (d == 0 && w_holder(w) == 0) {
      if (peek) return 0;
      if (!atomic_compare_exchange_weak(&s->word, &w, word(seq_full(pos), me))) continue;
      uint64_t p2 = pos;
      advance(&q->tail, &p2);
      if (s->len & LEN_DONE) { /* left empty by a put that found no memory */
        slot_release(q, s, seq_free(pos + q->nslots));
        pos = atomic_load(&q->tail);
        continue;
      }
      return slot_consume(a, q, s, seq_free(pos + q->nslots), sink, ud);
    }
    if (d < 0) { /* not yet published for this ticket */
      uint64_t t = atomic_load(&q->tail);
      if (t != pos) {
        pos = t;
        continue;
      }
      if (w_seq(w) == (uint32_t)seq_free(pos) && w_holder(w) != 0 && !(w_holder(w) & RBIT)) return RING_BUSY;
      return RING_EMPTY;
    }
    advance(&q->tail, &pos); /* another reader has it, or tail is stale */
  }
}

static void task_undo(queue_t *q) {
  int64_t n = atomic_load(&q->unfinished);
  while (n > 0)
    if (atomic_compare_exchange_weak(&q->unfinished, &n, n - 1)) {
      if (n == 1) cr__ev_notify(&q->join_ev);
      break;
    }
}

static void slot_discard(cr_arena_t *a, queue_t *q, slot_t *s);

/* Frees the slots at the front of the ring (from tail on) whose producers
 * died holding them: each half-written message is dropped, never seen, and
 * its slot freed for the next lap. A block it had attached (LEN_BLOCK) is
 * given back with the references of its message. Returns how many slots
 * it freed. A slot further on waits until tail reaches it. */
static int skip_dead_writers(cr_arena_t *a, queue_t *q) {
  int n = 0;
  for (;;) {
    uint64_t pos = atomic_load(&q->tail);
    slot_t *s = slot_for(q, pos);
    uint64_t w = atomic_load(&s->word);
    uint32_t h = w_holder(w);
    if (w_seq(w) != (uint32_t)seq_free(pos) || h == 0 || (h & RBIT) || cr__chan_pid_alive((int)h)) return n;
    if (!atomic_compare_exchange_strong(&s->word, &w, word(seq_free(pos), (uint32_t)cr__chan_self()))) continue;
    uint64_t len = s->len;
    if (len & LEN_BLOCK) {
      settle(a, q);
      slot_discard(a, q, s);
    }
    s->len = 0;
    atomic_store_explicit(&s->word, word(seq_free(pos + q->nslots), 0), memory_order_release);
    if (len & LEN_TASK) task_undo(q);
    uint64_t p = pos;
    advance(&q->head, &p); /* it may have died before moving head */
    p = pos;
    advance(&q->tail, &p);
    cr__ev_notify(&q->put_ev);
    n++;
  }
}

void cr_queue_forget(cr_arena_t *a, cr_off_t q, int pid) {
  if (pid > 0) mark_orphans(qp(a, q), pid);
}

/* ---- the overflow list ------------------------------------------------------------------ */

static int ovf_allowed(queue_t *q) { return q->maxsize == 0 || q->maxsize > (int64_t)q->nslots; }

/* Locks the overflow list; after a holder's death, rebuilds tail and count
 * from the links (the only edits are a link and two stores), and gives
 * back the pending block if it is not in the list: a producer's that it
 * died filling or linking (with its message's references), or a reader's
 * that it died giving back (LEN_DONE: the references are not the
 * message's any more). */
static void ovf_lock(cr_arena_t *a, queue_t *q) {
  if (pthread_mutex_lock(&q->ovf_lock) != EOWNERDEAD) return;
  settle(a, q); /* the holder may have died moving the pending block */
  uint64_t n = 0, last = 0;
  int pending_in = 0;
  for (uint64_t b = q->ovf_head; b; b = ((mblk_t *)cr_arena_ptr(a, b))->next) {
    n++;
    last = b;
    pending_in |= b == q->ovf_pending;
  }
  q->ovf_tail = last;
  atomic_store(&q->ovf_count, n);
  if (q->ovf_pending && !pending_in) {
    mblk_t *m = cr_arena_ptr(a, q->ovf_pending);
    uint64_t len = m->len;
    if (len & LEN_MASK && !(len & LEN_DONE)) {
      m->len = LEN_DONE; /* so that a death in the drop does not drop them twice */
      atomic_signal_fence(memory_order_seq_cst);
      cr_refs_message_dropped(a, (const char *)m + sizeof *m, (size_t)(len & LEN_MASK));
    }
    block_put(a, q, &q->ovf_pending);
  }
  q->ovf_pending = 0;
  pthread_mutex_consistent(&q->ovf_lock);
}


/* Appends a message to the overflow list. Its block is taken, filled and
 * linked under the list's lock, recorded as pending (with length 0 until
 * it is filled), so that a producer killed at any point, even while it
 * waits for the lock, leaves no block behind. 0 or CR_ENOMEM. */
static int ovf_push(cr_arena_t *a, queue_t *q, const void *head, size_t hlen, const void *body, size_t blen) {
  ovf_lock(a, q);
  int rc = block_get(a, q, hlen + blen, &q->ovf_pending); /* recorded as it is taken */
  if (rc < 0) {
    pthread_mutex_unlock(&q->ovf_lock);
    return rc;
  }
  cr_off_t blk = q->ovf_pending;
  mblk_t *m = cr_arena_ptr(a, blk);
  m->next = 0;
  atomic_signal_fence(memory_order_seq_cst);
  msg_copy(m, head, hlen, body, blen);
  atomic_signal_fence(memory_order_seq_cst);
  if (q->ovf_tail) ((mblk_t *)cr_arena_ptr(a, q->ovf_tail))->next = blk;
  else q->ovf_head = blk;
  q->ovf_tail = blk;
  atomic_fetch_add(&q->ovf_count, 1);
  atomic_signal_fence(memory_order_seq_cst);
  q->ovf_pending = 0;
  pthread_mutex_unlock(&q->ovf_lock);
  return 0;
}

/* Copies out under the lock, so that a reader's death leaves the message
 * linked; then unlinks it, recorded as pending and delivered (LEN_DONE),
 * and gives its block back, all under the lock: a reader's death after the
 * unlink leaves the block to ovf_lock's recovery. 0 (or the sink's error)
 * or RING_EMPTY. */
static int ovf_pop(cr_arena_t *a, queue_t *q, cr_chan_sink_fn sink, void *ud) {
  ovf_lock(a, q);
  cr_off_t b = q->ovf_head;
  if (!b) {
    pthread_mutex_unlock(&q->ovf_lock);
    return RING_EMPTY;
  }
  mblk_t *m = cr_arena_ptr(a, b);
  size_t n = (size_t)(m->len & LEN_MASK);
  int rc = sink ? sink(ud, (const char *)m + sizeof *m, n) : 0;
  park(q, CR_QUEUE_PARK_GET);
  q->ovf_pending = b;
  atomic_signal_fence(memory_order_seq_cst);
  m->len |= LEN_DONE; /* (while linked: ignored) */
  atomic_signal_fence(memory_order_seq_cst);
  q->ovf_head = m->next;
  if (!q->ovf_head) q->ovf_tail = 0;
  atomic_fetch_sub(&q->ovf_count, 1);
  atomic_signal_fence(memory_order_seq_cst);
  park(q, CR_QUEUE_PARK_GIVE);
  /* unlinked, it cannot be delivered again: its references can go */
  if (rc == CR_CHAN_SINK_DROP) cr_refs_message_dropped(a, (const char *)m + sizeof *m, n);
  block_put(a, q, &q->ovf_pending);
  pthread_mutex_unlock(&q->ovf_lock);
  cr__ev_notify(&q->put_ev);
  return rc < 0 ? rc : 0;
}

/* ---- put and get ---------------------------------------------------------------------------- */

int cr_queue_new(cr_arena_t *a, int64_t maxsize, unsigned flags, cr_off_t *out) {
  if (maxsize < 0) return CR_EINVAL;
  uint32_t n = maxsize == 0                        ? CR_QUEUE_UNBOUNDED_SLOTS
               : maxsize > CR_QUEUE_MAX_SLOTS      ? CR_QUEUE_MAX_SLOTS
                                                   : (uint32_t)maxsize;
  cr_off_t off;
  int rc = cr_obj_new(a, CR_OBJ_QUEUE, SLOTS_AT + (size_t)n * sizeof(slot_t), &off);
  if (rc < 0) return rc;
  queue_t *q = qp(a, off);
  q->nslots = n;
  q->qflags = flags;
  q->maxsize = maxsize;
  pthread_mutexattr_t at;
  pthread_mutexattr_init(&at);
  pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&q->ovf_lock, &at);
  pthread_mutex_init(&q->cache_lock, &at);
  pthread_mutexattr_destroy(&at);
  for (uint32_t i = 0; i < n; i++)
    atomic_store_explicit(&slots(q)[i].word, word(seq_free(i), 0), memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  *out = off;
  return 0;
}

/* Messages from tail to head, in the ring and the overflow list. */
static int64_t queue_count(queue_t *q) {
  uint64_t t = atomic_load(&q->tail);
  uint64_t h = atomic_load(&q->head);
  int64_t n = (int64_t)(h - t);
  if (n < 0) n = 0;
  return n + (int64_t)atomic_load(&q->ovf_count);
}

int64_t cr_queue_size(cr_arena_t *a, cr_off_t qo) {
  queue_t *q = qp(a, qo);
  skip_dead_writers(a, q); /* a killed producer's put is no longer in flight */
  int64_t n = queue_count(q);
  if (atomic_load(&q->orphan_gen) != atomic_load(&q->orphan_done))
    for (uint32_t i = 0; i < q->nslots; i++)
      n += w_holder(atomic_load(&slots(q)[i].word)) == ORPHAN && !(slots(q)[i].len & LEN_DONE);
  return n;
}

int64_t cr__queue_backlog(cr_arena_t *a, cr_off_t q) { return queue_count(qp(a, q)); }
_Atomic uint32_t *cr__queue_get_ev(cr_arena_t *a, cr_off_t q) { return &qp(a, q)->get_ev; }

int64_t cr_queue_maxsize(cr_arena_t *a, cr_off_t q) { return qp(a, q)->maxsize; }
unsigned cr_queue_flags(cr_arena_t *a, cr_off_t q) { return qp(a, q)->qflags; }
int cr_queue_is_closed(cr_arena_t *a, cr_off_t q) { return (int)atomic_load(&qp(a, q)->closed); }

void cr_queue_close(cr_arena_t *a, cr_off_t qo) {
  queue_t *q = qp(a, qo);
  atomic_store(&q->closed, 1);
  cr__ev_notify(&q->get_ev);
  cr__ev_notify(&q->put_ev);
}

void cr__queue_wake_getters(cr_arena_t *a, cr_off_t q) { cr__ev_notify(&qp(a, q)->get_ev); }

static int ring_has_room(queue_t *q) {
  uint64_t pos = atomic_load(&q->head);
  uint64_t w = atomic_load(&slot_for(q, pos)->word);
  return (int32_t)(w_seq(w) - (uint32_t)seq_free(pos)) >= 0;
}

/* Room in the overflow list: always when unbounded, else below maxsize. */
static int ovf_room(queue_t *q) {
  return ovf_allowed(q) && (q->maxsize == 0 || queue_count(q) < q->maxsize);
}

/* Puts the message at the end of the overflow list. 0 or CR_ENOMEM. */
static int put_overflow(cr_arena_t *a, queue_t *q, const msg_t *m) {
  if (q->qflags & CR_QUEUE_JOINABLE) atomic_fetch_add(&q->unfinished, 1);
  int rc = ovf_push(a, q, m->head, m->hlen, m->body, m->blen);
  if (rc < 0) {
    if (q->qflags & CR_QUEUE_JOINABLE) task_undo(q);
    return rc;
  }
  cr__ev_notify(&q->get_ev);
  return 0;
}

static int queue_put_msg(cr_arena_t *a, queue_t *q, const msg_t *m, double timeout);

int cr_queue_put(cr_arena_t *a, cr_off_t qo, const void *data, size_t len, double timeout) {
  return cr_queue_put2(a, qo, data, len, NULL, 0, timeout);
}

int cr_queue_put2(cr_arena_t *a, cr_off_t qo, const void *head, size_t hlen, const void *body, size_t blen,
                  double timeout) {
  queue_t *q = qp(a, qo);
  size_t len = hlen + blen;
  if (len < hlen || (uint64_t)len > LEN_MASK) return CR_EINVAL;
  if (atomic_load_explicit(&q->closed, memory_order_acquire)) return CR_ECLOSED;
  msg_t m = {head, body, hlen, blen, len};
  char joined[CR_QUEUE_INLINE];
  if (len <= CR_QUEUE_INLINE && blen) { /* a short message travels as one part */
    memcpy(joined, head, hlen);
    memcpy(joined + hlen, body, blen);
    m.head = joined;
    m.hlen = len;
    m.blen = 0;
  }
  return queue_put_msg(a, q, &m, timeout);
}

static int queue_put_msg(cr_arena_t *a, queue_t *q, const msg_t *m, double timeout) {
  int rc;
  cr__deadline_t dl;
  int have_dl = 0;
  cr__spin_t spin = {0};
  for (;;) {
    if (atomic_load_explicit(&q->closed, memory_order_acquire)) {
      rc = CR_ECLOSED;
      break;
    }
    /* While the overflow list holds messages, new ones queue behind them. */
    if (atomic_load(&q->ovf_count) > 0 && ovf_room(q)) {
      rc = put_overflow(a, q, m);
      break;
    }
    if ((rc = ring_put(a, q, m)) == 0) {
      cr__ev_notify(&q->get_ev);
      break;
    }
    if (rc != CR_EFULL) break;
    /* The ring is full: wait a little for room, then overflow or sleep. */
    if (timeout != 0 && cr__spin(&spin)) continue;
    if (skip_dead_writers(a, q)) continue; /* room held by killed producers */
    if (ovf_room(q)) {
      rc = put_overflow(a, q, m);
      break;
    }
    if (timeout == 0) {
      rc = CR_EFULL;
      break;
    }
    if (!have_dl) {
      cr__deadline_set(&dl, timeout);
      have_dl = 1;
      cr_intr_begin();
    }
    if (cr_intr_pending()) {
      rc = CR_EINTR;
      break;
    }
    if (cr__deadline_expired(&dl)) {
      rc = CR_EFULL;
      break;
    }
    uint32_t v = cr__ev_prepare(&q->put_ev);
    if (ring_has_room(q) || ovf_room(q) || atomic_load(&q->closed)) continue;
    cr__deadline_t sl;
    cr__deadline_min(&sl, &dl, WAIT_SLICE);
    if (cr__futex_wait(&q->put_ev, v, &sl) == CR_EINTR) {
      rc = CR_EINTR;
      break;
    }
  }
  if (have_dl) cr_intr_end();
  return rc;
}

int cr__queue_get_ex(cr_arena_t *a, cr_off_t qo, cr_chan_sink_fn sink, void *ud, double timeout,
                     cr__chan_gone_fn gone, void *gone_ud, int peek, double slice) {
  queue_t *q = qp(a, qo);
  cr__deadline_t dl;
  int have_dl = 0, intr_on = 0, slept_out = 0, rc;
  cr__spin_t spin = {0};
  for (;;) {
    /* closed is read before looking for messages: a message published
     * before the close is then always seen. */
    int closed = (int)atomic_load_explicit(&q->closed, memory_order_acquire);
    rc = ring_get(a, q, sink, ud, peek);
    if (rc <= 0) break;
    if (atomic_load(&q->ovf_count) > 0) {
      if (peek) {
        rc = 0;
        break;
      }
      if ((rc = ovf_pop(a, q, sink, ud)) <= 0) break;
    }
    if (rc == RING_EMPTY && (closed || (gone && gone(gone_ud, 0)))) {
      /* The end: first what readers that no reaper reported left behind. */
      if (mark_orphans(q, 0)) continue;
      rc = CR_ECLOSED;
      break;
    }
    if ((timeout != 0 || rc == RING_BUSY) && cr__spin(&spin)) continue;
    /* About to give up or sleep: the thorough checks. */
    if (rc == RING_BUSY && skip_dead_writers(a, q)) continue;
    if (slept_out) {
      slept_out = 0;
      if (mark_orphans(q, 0)) continue;
    }
    if (gone && rc == RING_EMPTY && gone(gone_ud, 1)) continue; /* re-drain, then closed */
    if (timeout == 0) {
      rc = CR_EEMPTY;
      break;
    }
    if (!have_dl) {
      cr__deadline_set(&dl, timeout);
      have_dl = 1;
      cr_intr_begin();
      intr_on = 1;
    }
    if (cr_intr_pending()) {
      rc = CR_EINTR;
      break;
    }
    if (cr__deadline_expired(&dl)) {
      rc = CR_EEMPTY;
      break;
    }
    uint32_t v = cr__ev_prepare(&q->get_ev);
    uint64_t t = atomic_load(&q->tail);
    uint64_t w = atomic_load(&slot_for(q, t)->word);
    if ((int32_t)(w_seq(w) - (uint32_t)seq_full(t)) >= 0 || atomic_load(&q->ovf_count) > 0 ||
        atomic_load(&q->closed))
      continue;
    cr__deadline_t sl;
    cr__deadline_min(&sl, &dl, slice);
    rc = cr__futex_wait(&q->get_ev, v, &sl);
    if (rc == CR_EINTR) break;
    if (rc == CR_ETIMEDOUT) slept_out = 1;
    rc = 0;
  }
  if (intr_on) cr_intr_end();
  return rc;
}

int cr_queue_get(cr_arena_t *a, cr_off_t q, cr_chan_sink_fn sink, void *ud, double timeout) {
  return cr__queue_get_ex(a, q, sink, ud, timeout, NULL, NULL, 0, WAIT_SLICE);
}

/* ---- joinable ------------------------------------------------------------------------------ */

int cr_queue_task_done(cr_arena_t *a, cr_off_t qo) {
  queue_t *q = qp(a, qo);
  if (!(q->qflags & CR_QUEUE_JOINABLE)) return CR_EINVAL;
  int64_t n = atomic_load(&q->unfinished);
  for (;;) {
    if (n <= 0) return CR_ETOOMANY;
    if (atomic_compare_exchange_weak(&q->unfinished, &n, n - 1)) break;
  }
  if (n == 1) cr__ev_notify(&q->join_ev);
  return 0;
}

int64_t cr_queue_unfinished(cr_arena_t *a, cr_off_t q) { return atomic_load(&qp(a, q)->unfinished); }

int cr_queue_join(cr_arena_t *a, cr_off_t qo, double timeout) {
  queue_t *q = qp(a, qo);
  if (!(q->qflags & CR_QUEUE_JOINABLE)) return CR_EINVAL;
  if (atomic_load(&q->unfinished) <= 0) return 0;
  if (timeout == 0) return CR_ETIMEDOUT;
  cr__deadline_t dl;
  cr__deadline_set(&dl, timeout);
  cr_intr_begin();
  int rc = 0;
  for (;;) {
    uint32_t v = cr__ev_prepare(&q->join_ev);
    if (atomic_load(&q->unfinished) <= 0) break;
    if (cr__deadline_expired(&dl)) {
      rc = CR_ETIMEDOUT;
      break;
    }
    rc = cr__futex_wait(&q->join_ev, v, &dl);
    if (rc == CR_EINTR) break;
    rc = 0;
  }
  cr_intr_end();
  return rc;
}

/* ---- lifetime ------------------------------------------------------------------------------ */

/* Gives back the references of the message in slot s (unless delivered:
 * LEN_DONE), then its block if the slot records one (LEN_BLOCK). The slot
 * says delivered before the references go, so that a death in their drop
 * does not leave them to be dropped twice. */
static void slot_discard(cr_arena_t *a, queue_t *q, slot_t *s) {
  uint64_t len = s->len, n = len & LEN_MASK;
  if (!(len & LEN_DONE) && n) {
    s->len = LEN_DONE | (len & LEN_BLOCK);
    atomic_signal_fence(memory_order_seq_cst);
    if (len & LEN_BLOCK) cr_refs_message_dropped(a, (const char *)cr_arena_ptr(a, s->u.off) + sizeof(mblk_t), (size_t)n);
    else cr_refs_message_dropped(a, s->u.data, (size_t)n);
  }
  if (len & LEN_BLOCK) block_put(a, q, &s->u.off); /* (a killed producer's may be 0) */
}

static void queue_destroy(cr_arena_t *a, cr_off_t qo) {
  queue_t *q = qp(a, qo);
  /* a producer killed inside the overflow list's lock: recovered here if
   * nobody took the lock since (its pending block is given back) */
  ovf_lock(a, q);
  pthread_mutex_unlock(&q->ovf_lock);
  settle(a, q);
  /* Published messages, messages whose reader died, and killed producers'. */
  uint64_t head = atomic_load(&q->head);
  for (uint64_t pos = atomic_load(&q->tail); pos < head; pos++) {
    slot_t *s = slot_for(q, pos);
    if (atomic_load(&s->word) == word(seq_full(pos), 0)) slot_discard(a, q, s);
  }
  for (uint32_t i = 0; i < q->nslots; i++) {
    slot_t *s = &slots(q)[i];
    uint32_t h = w_holder(atomic_load(&s->word));
    /* a reader's, or a killed producer's with its block attached */
    if ((h & RBIT) || (h && (s->len & LEN_BLOCK))) slot_discard(a, q, s);
  }
  for (cr_off_t b = q->ovf_head; b;) {
    mblk_t *m = cr_arena_ptr(a, b);
    cr_off_t next = m->next;
    cr_refs_message_dropped(a, (const char *)m + sizeof(mblk_t), (size_t)(m->len & LEN_MASK));
    cr_arena_free(a, b);
    b = next;
  }
  cache_drain(a, q);
  pthread_mutex_destroy(&q->ovf_lock);
  pthread_mutex_destroy(&q->cache_lock);
}

int cr_queue_release(cr_arena_t *a, cr_off_t q) { return cr_obj_release(a, q, queue_destroy); }
