/* corral engine: pipes (design and contracts in corral/chan.h).
 *
 * Two end objects (kind PIPE) share a core block: the queues, one per
 * direction, and per end a table of holders (pid, open handles there). The
 * core lives while either end object does. */
#define _GNU_SOURCE
#include "chan_int.h"
#include "corral/errors.h"

#include <string.h>

#define NHOLDERS   256
#define PIPE_SLICE 0.1 /* seconds between checks that the far processes run */
/* A sender checks that a reader of the far end still runs each time
 * senders have queued about this many bytes (a message counts
 * SEND_MSG_COST more) while messages wait: sends to a dead reader stop
 * within about 4 MiB or 1024 messages, however fast they come, and the
 * check (a system call or two) costs nothing next to the copying. */
#define SEND_BUDGET   (1 << 22)
#define SEND_MSG_COST 4096

/* A holder entry is one word, pid in the high half and that process's open
 * handles in the low half, so that every change to it is one CAS: the
 * owner adding or removing a handle and the reaper clearing the entry of a
 * process that ended can never interleave half-way. 0 is a free entry. */
typedef _Atomic uint64_t holder_t;
#define HOLDER(pid, n) (((uint64_t)(uint32_t)(pid) << 32) | (uint32_t)(n))
#define HOLDER_PID(w)  ((int32_t)((w) >> 32))
#define HOLDER_N(w)    ((int32_t)(uint32_t)(w))

typedef struct {
  _Atomic int32_t total; /* open handles of this end, in all processes */
  _Atomic int32_t extra; /* of those, held by processes the table had no room for */
  _Atomic uint32_t destroyed; /* the end object is freed (read before its refs) */
  _Atomic uint32_t gen;  /* moved by every hold, unhold and forget */
  _Atomic uint32_t gone_at; /* gen + 1: the end was found gone at that gen */
  _Atomic int32_t credit;   /* bytes senders may queue before the next check (SEND_BUDGET) */
  cr_off_t obj;          /* the end object */
  holder_t h[NHOLDERS];
} holders_t;

typedef struct {
  _Atomic uint32_t refs; /* end objects alive */
  uint32_t duplex;
  cr_off_t chan[2];      /* chan[i]: messages to end i; 0 when end i cannot receive */
  holders_t ends[2];
} core_t;

typedef struct {
  cr_obj_t hdr;
  cr_off_t core;
  uint32_t index;
  uint32_t pad;
} end_t;

static end_t *endp(cr_arena_t *a, cr_off_t end) { return cr_arena_ptr(a, end); }
static core_t *corep(cr_arena_t *a, cr_off_t end) { return cr_arena_ptr(a, endp(a, end)->core); }

int cr_pipe_new(cr_arena_t *a, int duplex, cr_off_t ends[2]) {
  cr_off_t core = 0, e0 = 0, e1 = 0, q0 = 0, q1 = 0;
  int rc;
  if ((rc = cr_arena_alloc(a, sizeof(core_t), &core)) < 0) goto fail;
  if ((rc = cr_queue_new(a, 0, 0, &q0)) < 0) goto fail;
  if (duplex && (rc = cr_queue_new(a, 0, 0, &q1)) < 0) goto fail;
  if ((rc = cr_obj_new(a, CR_OBJ_PIPE, sizeof(end_t), &e0)) < 0) goto fail;
  if ((rc = cr_obj_new(a, CR_OBJ_PIPE, sizeof(end_t), &e1)) < 0) goto fail;
  core_t *c = cr_arena_ptr(a, core);
  c->duplex = duplex != 0;
  c->chan[0] = q0;
  c->chan[1] = q1;
  atomic_store(&c->refs, 2);
  endp(a, e0)->core = core;
  endp(a, e0)->index = 0;
  endp(a, e1)->core = core;
  endp(a, e1)->index = 1;
  c->ends[0].obj = e0;
  c->ends[1].obj = e1;
  ends[0] = e0;
  ends[1] = e1;
  return 0;
fail:
  if (e0) cr_obj_release(a, e0, NULL);
  if (q1) cr_queue_release(a, q1);
  if (q0) cr_queue_release(a, q0);
  cr_arena_free(a, core);
  return rc;
}

static void end_destroy(cr_arena_t *a, cr_off_t end) {
  core_t *c = corep(a, end);
  atomic_store(&c->ends[endp(a, end)->index].destroyed, 1);
  if (atomic_fetch_sub(&c->refs, 1) != 1) return;
  for (int i = 0; i < 2; i++)
    if (c->chan[i]) cr_queue_release(a, c->chan[i]);
  cr_arena_free(a, endp(a, end)->core);
}

int cr_pipe_release(cr_arena_t *a, cr_off_t end) { return cr_obj_release(a, end, end_destroy); }

int cr_pipe_index(cr_arena_t *a, cr_off_t end) { return (int)endp(a, end)->index; }
int cr_pipe_readable(cr_arena_t *a, cr_off_t end) { return corep(a, end)->chan[endp(a, end)->index] != 0; }
int cr_pipe_writable(cr_arena_t *a, cr_off_t end) { return corep(a, end)->chan[1 - endp(a, end)->index] != 0; }

/* ---- holders ------------------------------------------------------------------ */

static holders_t *holders(cr_arena_t *a, cr_off_t end) { return &corep(a, end)->ends[endp(a, end)->index]; }

/* One handle fewer open; with the last of this end, far readers are woken
 * to see the end of stream. */
static void lower_total(cr_arena_t *a, cr_off_t end, int32_t n) {
  if (n <= 0) return;
  core_t *c = corep(a, end);
  unsigned idx = endp(a, end)->index;
  if (atomic_fetch_sub(&c->ends[idx].total, n) == n && c->chan[1 - idx])
    cr__queue_wake_getters(a, c->chan[1 - idx]);
}

/* Takes up to n from the overflow count; returns how many it took. */
static int32_t take_extra(holders_t *hs, int32_t n) {
  int32_t x = atomic_load(&hs->extra);
  while (x > 0 && !atomic_compare_exchange_weak(&hs->extra, &x, x > n ? x - n : 0)) {
  }
  return x > n ? n : (x > 0 ? x : 0);
}

/* One more handle in pid's entry (or, the table full, in `extra`). */
static void add_holder(holders_t *hs, int pid) {
  for (int i = 0; i < NHOLDERS; i++) { /* our own entry */
    uint64_t w = atomic_load(&hs->h[i]);
    while (w && HOLDER_PID(w) == pid)
      if (atomic_compare_exchange_weak(&hs->h[i], &w, HOLDER(pid, HOLDER_N(w) + 1))) return;
  }
  for (int i = 0; i < NHOLDERS; i++) {
    uint64_t w = 0;
    if (atomic_compare_exchange_strong(&hs->h[i], &w, HOLDER(pid, 1))) return;
  }
  atomic_fetch_add(&hs->extra, 1);
}

/* The entry before the count: once the count says the handle is no longer
 * in flight, end_gone finds its holder. */
void cr_pipe_hold(cr_arena_t *a, cr_off_t end, int pid) {
  holders_t *hs = holders(a, end);
  add_holder(hs, pid);
  atomic_fetch_add(&hs->total, 1);
  atomic_fetch_add(&hs->gen, 1);
}

void cr_pipe_unhold(cr_arena_t *a, cr_off_t end, int pid) {
  holders_t *hs = holders(a, end);
  int found = 0;
  for (int i = 0; i < NHOLDERS && !found; i++) {
    uint64_t w = atomic_load(&hs->h[i]);
    while (!found && w && HOLDER_PID(w) == pid)
      found = atomic_compare_exchange_weak(&hs->h[i], &w, HOLDER_N(w) > 1 ? HOLDER(pid, HOLDER_N(w) - 1) : 0);
  }
  if (!found) take_extra(hs, 1);
  atomic_fetch_add(&hs->gen, 1);
  lower_total(a, end, 1);
}

void cr_pipe_forget(cr_arena_t *a, cr_off_t end, int pid, int handles) {
  holders_t *hs = holders(a, end);
  int32_t gone = 0;
  for (int i = 0; i < NHOLDERS && !gone; i++) {
    uint64_t w = atomic_load(&hs->h[i]);
    while (!gone && w && HOLDER_PID(w) == pid)
      if (atomic_compare_exchange_weak(&hs->h[i], &w, 0)) gone = HOLDER_N(w);
  }
  if (gone < handles) gone += take_extra(hs, handles - gone);
  atomic_fetch_add(&hs->gen, 1);
  lower_total(a, end, gone);
  cr_off_t q = corep(a, end)->chan[endp(a, end)->index];
  if (q) cr_queue_forget(a, q, pid); /* a recv it was in the middle of */
}

int cr_pipe_held_by(cr_arena_t *a, cr_off_t end, int pid) {
  holders_t *hs = holders(a, end);
  for (int i = 0; i < NHOLDERS; i++) {
    uint64_t w = atomic_load(&hs->h[i]);
    if (w && HOLDER_PID(w) == pid) return HOLDER_N(w);
  }
  return 0;
}

typedef struct {
  cr_arena_t *a;
  holders_t *far;
} gone_t;

/* References to the far end object beyond its registered handles: handles
 * travelling in messages (the codec holds a reference for them) and
 * handles a forked child has not registered yet. -1 once the object is
 * freed. */
static int64_t in_flight(cr_arena_t *a, holders_t *hs) {
  if (atomic_load(&hs->destroyed)) return -1;
  int64_t refs = atomic_load((_Atomic uint32_t *)&((cr_obj_t *)cr_arena_ptr(a, hs->obj))->refs);
  /* Freed meanwhile: what we read may be anything. */
  if (atomic_load(&hs->destroyed)) return -1;
  return refs - atomic_load(&hs->total);
}

/* Is the end gone? Cheap: no handle open anywhere and none in flight.
 * Full: none in flight, and no process in its table still runs. Once gone
 * an end stays gone (no live process has a handle to pass on) until its
 * holders change, so the verdict is kept with the `gen` it was reached at;
 * a verdict is reached only when `gen` did not move while it was made and
 * nothing was in flight before and after, so that a handle passed on
 * meanwhile is never missed. */
static int end_gone(cr_arena_t *a, holders_t *hs, int full) {
  uint32_t gen = atomic_load(&hs->gen);
  if (atomic_load(&hs->gone_at) == gen + 1) return 1;
  if (!full && atomic_load(&hs->total) > 0) return 0; /* the common case, first */
  if (in_flight(a, hs) > 0) return 0;
  if (atomic_load(&hs->total) > 0) {
    if (atomic_load(&hs->extra) > 0) return 0;
    for (int i = 0; i < NHOLDERS; i++) {
      uint64_t w = atomic_load(&hs->h[i]);
      if (w && HOLDER_N(w) > 0 && cr__chan_pid_alive(HOLDER_PID(w))) return 0;
    }
    if (in_flight(a, hs) > 0) return 0;
  }
  if (atomic_load(&hs->gen) != gen) return 0;
  atomic_store(&hs->gone_at, gen + 1);
  return 1;
}

static int far_gone(void *ud, int full) {
  gone_t *g = ud;
  return end_gone(g->a, g->far, full);
}

/* ---- send, recv, poll ------------------------------------------------------------ */

int cr_pipe_send(cr_arena_t *a, cr_off_t end, const void *data, size_t len) {
  core_t *c = corep(a, end);
  unsigned far = 1 - endp(a, end)->index;
  if (!c->chan[far]) return CR_ESTATE;
  holders_t *fh = &c->ends[far];
  if (end_gone(a, fh, 0)) return CR_ECLOSED;
  /* Now and then, while messages wait, check that a reader still runs. */
  int32_t cost = len >= SEND_BUDGET ? SEND_BUDGET : (int32_t)len + SEND_MSG_COST;
  if (atomic_fetch_sub(&fh->credit, cost) <= cost) {
    atomic_store(&fh->credit, SEND_BUDGET);
    if (cr__queue_backlog(a, c->chan[far]) > 0 && end_gone(a, fh, 1)) return CR_ECLOSED;
  }
  return cr_queue_put(a, c->chan[far], data, len, -1);
}

int cr_pipe_recv(cr_arena_t *a, cr_off_t end, cr_chan_sink_fn sink, void *ud, double timeout) {
  core_t *c = corep(a, end);
  unsigned idx = endp(a, end)->index;
  if (!c->chan[idx]) return CR_ESTATE;
  gone_t g = {a, &c->ends[1 - idx]};
  return cr__queue_get_ex(a, c->chan[idx], sink, ud, timeout, far_gone, &g, 0, PIPE_SLICE);
}

int cr_pipe_poll(cr_arena_t *a, cr_off_t end, double timeout) {
  core_t *c = corep(a, end);
  unsigned idx = endp(a, end)->index;
  if (!c->chan[idx]) return CR_ESTATE;
  gone_t g = {a, &c->ends[1 - idx]};
  int rc = cr__queue_get_ex(a, c->chan[idx], NULL, NULL, timeout, far_gone, &g, 1, PIPE_SLICE);
  return rc == CR_ECLOSED ? 0 : rc;
}

#ifdef CORRAL_TESTING
uint32_t cr_pipe_test_parked(cr_arena_t *a, cr_off_t end) {
  cr_off_t q = corep(a, end)->chan[endp(a, end)->index];
  return q ? cr_queue_test_parked(a, q) : 0;
}
#endif
