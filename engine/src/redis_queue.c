/* corral engine: the queue on a Redis stream (see corral/redis.h). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "corral/engine.h"
#include "corral/errors.h"
#include "corral/redis.h"
#include "redis_int.h"

#define SLICE 0.1     /* longest server-side block of a get */
#define POLL_MIN 1e-3 /* a full put, join: first poll interval */
#define POLL_MAX 0.05

#define BATCH 64        /* an unbounded Queue's entries per fetch, at first and while slow */
#define BATCH_MAX 256   /* ... and at most, while it hands them out fast */
#define BATCH_FAST 0.01 /* a full batch used up this fast (seconds): the next may be twice as big */
#define BATCH_SLOW 0.1  /* ... one used up this slowly: half as big */

typedef struct {
  char id[32];
} entry_id_t;

struct cr_rqueue {
  cr_redis_t *c;
  char *name;
  char *stream, *closed; /* keys */
  int64_t maxsize;
  unsigned flags;
  long long vis_ms;
  unsigned char *key;
  size_t klen;
  int pid;             /* the process the consumer name is for */
  char consumer[128];
  entry_id_t *held;    /* JoinableQueue: ids got and not marked done, oldest first */
  size_t nheld, hcap, hhead;
  int count;           /* entries taken per fetch: BATCH to BATCH_MAX for an unbounded Queue, else 1 */
  int batch;           /* entries taken and not all handed out yet: bent[bnext..blen) */
  cr_redis_reply_t *bown[2]; /* the replies that hold them */
  const cr_redis_reply_t *bent[2 * BATCH_MAX];
  size_t bnext, backed, blen;
  double bat;          /* when the batch was taken */
  int ahead;           /* the next fetch was sent ahead (its replies wait in the connection) */
  double ahead_at;     /* when */
  cr__feed_t *feed;    /* an unbounded Queue's feeder thread, once it put */
};

/* The scripts: each checks or changes the stream in one step. KEYS[1] the
 * stream, KEYS[2] the closed mark. A missing stream (a server restarted
 * without its data) is made again with the group. */
#define ENSURE "if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('XGROUP', 'CREATE', KEYS[1], 'g', '0', 'MKSTREAM') end "

/* settle(stream, bound, ids): acknowledges the entries ids and deletes
 * them -> how many went. bound is the id just after the greatest of ids.
 * No acknowledged entry stays in the stream (so XLEN - pending is the
 * number not yet delivered). An entry older than both bound and every
 * pending entry was delivered and acknowledged: those go with one XTRIM
 * MINID, which drops whole nodes of the stream (an XDEL walks the node of
 * each id); only ids past another consumer's pending entry are deleted
 * one by one. */
#define SETTLE \
  "local function older(a, b) " \
  "  local am, as = string.match(a, '^(%d+)-(%d+)$') " \
  "  local bm, bs = string.match(b, '^(%d+)-(%d+)$') " \
  "  am, bm = tonumber(am), tonumber(bm) " \
  "  return am < bm or (am == bm and tonumber(as) < tonumber(bs)) " \
  "end " \
  "local function settle(k, bound, ids) " \
  "  redis.call('XACK', k, 'g', unpack(ids)) " \
  "  local m = bound " \
  "  local p = redis.call('XPENDING', k, 'g') " \
  "  if p[1] > 0 and older(p[2], m) then m = p[2] end " \
  "  local n = redis.call('XTRIM', k, 'MINID', m) " \
  "  if m == bound then return n end " \
  "  local rest = {} " \
  "  for i = 1, #ids do if not older(ids[i], m) then rest[#rest + 1] = ids[i] end end " \
  "  if #rest > 0 then n = n + redis.call('XDEL', k, unpack(rest)) end " \
  "  return n " \
  "end "

/* ARGV: maxsize, item, signature ("" for none) -> 1 put, 0 full, -1 closed */
static const char PUT[] =
  ENSURE
  "if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end "
  "local max = tonumber(ARGV[1]) "
  "if max > 0 then "
  "  local n = redis.call('XLEN', KEYS[1]) - redis.call('XPENDING', KEYS[1], 'g')[1] "
  "  if n >= max then return 0 end "
  "end "
  "if ARGV[3] ~= '' then redis.call('XADD', KEYS[1], '*', 'm', ARGV[2], 's', ARGV[3]) "
  "else redis.call('XADD', KEYS[1], '*', 'm', ARGV[2]) end "
  "return 1";

/* ARGV: consumer, visibility ms, ack (1: a Queue taking one entry), count
 * -> {entries} | 1 closed | 0 nothing now. Entries idle past the visibility
 * timeout in another consumer's hands come first. A Queue taking one entry
 * has it acknowledged and deleted at once; a batch is acknowledged once it
 * was handed out (ACK), a JoinableQueue's entries on task_done. */
static const char GET[] =
  ENSURE
  SETTLE
  "local n = tonumber(ARGV[4]) "
  "local r = redis.call('XAUTOCLAIM', KEYS[1], 'g', ARGV[1], ARGV[2], '0-0', 'COUNT', n) "
  "local es = r[2] "
  "if #es == 0 then "
  "  r = redis.call('XREADGROUP', 'GROUP', 'g', ARGV[1], 'COUNT', n, 'STREAMS', KEYS[1], '>') "
  "  if r then es = r[1][2] end "
  "end "
  "if #es > 0 then "
  "  if ARGV[3] == '1' then "
  "    local ms, sq = string.match(es[1][1], '^(%d+)-(%d+)$') "
  "    settle(KEYS[1], ms .. '-' .. string.format('%.0f', tonumber(sq) + 1), {es[1][1]}) "
  "  end "
  "  return es "
  "end "
  "return redis.call('EXISTS', KEYS[2])";

/* -> {entries in the stream, of them delivered and not acknowledged} */
static const char SIZE[] =
  ENSURE
  "return {redis.call('XLEN', KEYS[1]), redis.call('XPENDING', KEYS[1], 'g')[1]}";

/* ARGV: bound (as settle's), ids -> entries deleted */
static const char ACK[] =
  SETTLE
  "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
  "local ids = {} "
  "for i = 2, #ARGV do ids[i - 1] = ARGV[i] end "
  "return settle(KEYS[1], ARGV[1], ids)";

static char *keyname(const char *name, const char *what) {
  size_t n = strlen(name) + strlen(what) + 16;
  char *k = malloc(n);
  if (k) snprintf(k, n, "corral:{%s}:%s", name, what);
  return k;
}

static void batch_free(cr_rqueue_t *q) {
  for (int i = 0; i < 2; i++) {
    cr_redis_reply_free(q->bown[i]);
    q->bown[i] = NULL;
  }
  q->batch = 0;
  q->blen = q->bnext = q->backed = 0;
}

/* The consumer name of this process: a forked child is a consumer of its
 * own, and the items its parent holds stay the parent's. */
static void own(cr_rqueue_t *q) {
  int pid = getpid();
  if (q->pid == pid) return;
  static unsigned seq;
  char host[64] = "host";
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = 0;
  snprintf(q->consumer, sizeof q->consumer, "%s-%d-%u", host, pid, ++seq);
  q->pid = pid;
  q->nheld = q->hhead = 0;
  if (q->feed && !cr__feed_mine(q->feed)) q->feed = NULL; /* the parent's thread, not here */
  batch_free(q); /* the parent's: it hands them out itself */
  q->ahead = 0;
}

static int run(cr_rqueue_t *q, const char *script, int argc, const char **argv, const size_t *lens, double retry,
               cr_redis_reply_t **out) {
  const char *av[2 * BATCH_MAX + 8];
  size_t al[2 * BATCH_MAX + 8];
  if (argc > 2 * BATCH_MAX + 6) return CR_EINVAL;
  av[0] = q->stream, al[0] = strlen(q->stream);
  av[1] = q->closed, al[1] = strlen(q->closed);
  for (int i = 0; i < argc; i++) av[2 + i] = argv[i], al[2 + i] = lens[i];
  return cr_redis_eval(q->c, script, 2, argc + 2, av, al, retry, out);
}

int cr_rqueue_open(cr_redis_t *c, const char *name, int64_t maxsize, unsigned flags, double visibility,
                   const void *key, size_t klen, cr_rqueue_t **out) {
  *out = NULL;
  if (!name || !*name || maxsize < 0 || !(visibility > 0)) {
    cr_redis_free(c);
    return CR_EINVAL;
  }
  cr_rqueue_t *q = calloc(1, sizeof *q);
  if (!q) {
    cr_redis_free(c);
    return CR_ENOMEM;
  }
  q->c = c;
  q->name = strdup(name);
  q->stream = keyname(name, "q");
  q->closed = keyname(name, "closed");
  q->maxsize = maxsize;
  q->flags = flags & CR_QUEUE_JOINABLE;
  q->count = (maxsize == 0 && !(flags & CR_QUEUE_JOINABLE)) ? BATCH : 1;
  q->vis_ms = (long long)(visibility * 1000);
  if (q->vis_ms < 1) q->vis_ms = 1;
  if (key && klen) {
    q->key = malloc(klen);
    if (q->key) memcpy(q->key, key, klen);
    q->klen = klen;
  }
  if (!q->name || !q->stream || !q->closed || (klen && !q->key)) {
    cr_rqueue_free(q);
    return CR_ENOMEM;
  }
  cr_redis_reply_t *r;
  int rc = run(q, SIZE, 0, NULL, NULL, -1, &r);
  if (rc < 0) {
    cr_rqueue_free(q);
    return rc;
  }
  cr_redis_reply_free(r);
  *out = q;
  return 0;
}

static void give_back(cr_rqueue_t *q);

void cr_rqueue_free(cr_rqueue_t *q) {
  if (!q) return;
  if (q->feed) cr__feed_stop(q->feed); /* sends what waits first */
  if (q->pid == getpid()) give_back(q);
  batch_free(q);
  cr_redis_free(q->c);
  free(q->name);
  free(q->stream);
  free(q->closed);
  free(q->key);
  free(q->held);
  free(q);
}

cr_redis_t *cr_rqueue_conn(cr_rqueue_t *q) { return q->c; }
const char *cr_rqueue_name(const cr_rqueue_t *q) { return q->name; }
unsigned cr_rqueue_flags(const cr_rqueue_t *q) { return q->flags; }
int64_t cr_rqueue_maxsize(const cr_rqueue_t *q) { return q->maxsize; }

/* Waits the next poll interval (doubling up to POLL_MAX), never past
 * deadline: 0 to look again, 1 when the deadline has passed, CR_EINTR on
 * SIGINT. */
static int poll_pause(double deadline, double *poll) {
  double left = deadline - cr_now();
  if (left <= 0) return 1;
  if (cr_sleep(*poll < left ? *poll : left) == CR_EINTR || cr_intr_pending()) return CR_EINTR;
  *poll = *poll * 2 > POLL_MAX ? POLL_MAX : *poll * 2;
  return 0;
}

static double deadline_of(double timeout) { return timeout < 0 ? 1e300 : cr_now() + timeout; }

/* The reconnect budget of a call made before deadline: what is left of
 * the wait, but at least one try, and at most the connection's own. */
static double budget(double deadline) {
  double left = deadline - cr_now();
  if (left > CR_REDIS_RETRY) return -1;
  return left > 0 ? left : 0;
}

/* This process's puts waiting in its feeder are sent before anything that
 * should see them. */
static void flush(cr_rqueue_t *q) {
  if (q->feed && cr__feed_mine(q->feed)) cr__feed_flush(q->feed);
}

int cr_rqueue_put(cr_rqueue_t *q, const void *data, size_t len, double timeout) {
  if (q->count > 1) { /* an unbounded Queue: the feeder sends it */
    own(q);
    if (!q->feed) cr__feed_start(q->c, q->stream, q->closed, &q->feed);
    if (q->feed) {
      unsigned char fsig[CR_HMAC_LEN];
      if (q->klen) cr_hmac_sha256(q->key, q->klen, data, len, fsig);
      return cr__feed_put(q->feed, data, len, fsig, q->klen ? CR_HMAC_LEN : 0);
    }
  }
  char max[32];
  snprintf(max, sizeof max, "%lld", (long long)q->maxsize);
  unsigned char sig[CR_HMAC_LEN];
  if (q->klen) cr_hmac_sha256(q->key, q->klen, data, len, sig);
  const char *argv[3] = {max, data, (const char *)sig};
  size_t lens[3] = {strlen(max), len, q->klen ? CR_HMAC_LEN : 0};
  double deadline = deadline_of(timeout), poll = POLL_MIN;
  int rc = 0;
  cr_intr_begin();
  for (;;) {
    cr_redis_reply_t *r;
    rc = run(q, PUT, 3, argv, lens, budget(deadline), &r);
    if (rc < 0) break;
    long long v = cr_redis_reply_int(r);
    cr_redis_reply_free(r);
    if (v == 1) break;
    if (v < 0) {
      rc = CR_ECLOSED;
      break;
    }
    int w = poll_pause(deadline, &poll);
    if (w != 0) {
      rc = w == 1 ? CR_EFULL : w;
      break;
    }
  }
  cr_intr_end();
  return rc;
}

static int hold(cr_rqueue_t *q, const char *id, size_t n) {
  if (q->hhead > 0 && q->hhead == q->nheld) q->hhead = q->nheld = 0;
  if (q->nheld == q->hcap) {
    if (q->hhead > 0) { /* slide the live part down before growing */
      memmove(q->held, q->held + q->hhead, (q->nheld - q->hhead) * sizeof *q->held);
      q->nheld -= q->hhead;
      q->hhead = 0;
    }
    if (q->nheld == q->hcap) {
      size_t cap = q->hcap ? 2 * q->hcap : 16;
      entry_id_t *h = realloc(q->held, cap * sizeof *h);
      if (!h) return CR_ENOMEM;
      q->held = h;
      q->hcap = cap;
    }
  }
  if (n >= sizeof q->held[0].id) n = sizeof q->held[0].id - 1;
  memcpy(q->held[q->nheld].id, id, n);
  q->held[q->nheld].id[n] = 0;
  q->nheld++;
  return 0;
}

/* The (ms, seq) of an entry id "ms-seq". */
static void id_parts(const char *id, size_t len, unsigned long long *ms, unsigned long long *seq) {
  char buf[48];
  if (len >= sizeof buf) len = sizeof buf - 1;
  memcpy(buf, id, len);
  buf[len] = 0;
  char *end;
  *ms = strtoull(buf, &end, 10);
  *seq = *end == '-' ? strtoull(end + 1, NULL, 10) : 0;
}

/* Acknowledges and deletes the n (1 to 2 * BATCH_MAX) entries ids with the ACK
 * script: now, or, `ahead`, sent without waiting for the answer (it is
 * read with the next call's; a lost connection sends it again). 0 or a
 * connection code (now); a failure leaves the entries pending, and the
 * visibility timeout delivers them again (at least once). */
static int ack(cr_rqueue_t *q, size_t n, const char **ids, const size_t *lens, int ahead) {
  unsigned long long top_ms = 0, top_seq = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned long long ms, seq;
    id_parts(ids[i], lens[i], &ms, &seq);
    if (i == 0 || ms > top_ms || (ms == top_ms && seq > top_seq)) top_ms = ms, top_seq = seq;
  }
  char bound[48]; /* the id just after the greatest */
  if (top_seq == ~0ULL) snprintf(bound, sizeof bound, "%llu-0", top_ms + 1);
  else snprintf(bound, sizeof bound, "%llu-%llu", top_ms, top_seq + 1);
  const char *av[2 * BATCH_MAX + 6];
  size_t al[2 * BATCH_MAX + 6];
  av[0] = "EVAL", al[0] = 4; /* sent ahead, it could not be loaded after a NOSCRIPT: the script itself */
  av[1] = ACK, al[1] = strlen(ACK);
  av[2] = "2", al[2] = 1;
  av[3] = q->stream, al[3] = strlen(q->stream);
  av[4] = q->closed, al[4] = strlen(q->closed);
  av[5] = bound, al[5] = strlen(bound);
  for (size_t i = 0; i < n; i++) av[6 + i] = ids[i], al[6 + i] = lens[i];
  if (ahead) return cr__redis_send(q->c, (int)n + 6, av, al, 0);
  cr_redis_reply_t *r;
  int rc = run(q, ACK, (int)n + 1, av + 5, al + 5, -1, &r);
  if (rc == 0) cr_redis_reply_free(r);
  return rc;
}

/* Acknowledges (and deletes) the entries of the batch handed out so far,
 * sent ahead. */
static void ack_handed(cr_rqueue_t *q) {
  size_t n = q->bnext - q->backed;
  if (n == 0) return;
  const char *ids[2 * BATCH_MAX];
  size_t lens[2 * BATCH_MAX];
  for (size_t i = 0; i < n; i++) ids[i] = cr_redis_reply_str(cr_redis_reply_at(q->bent[q->backed + i], 0), &lens[i]);
  ack(q, n, ids, lens, 1);
  q->backed = q->bnext;
}

/* Hands entry e ({id, {field, value, ...}}) to the sink, after checking its
 * signature. A JoinableQueue's entry is recorded as held until task_done;
 * one with a bad signature is acknowledged and dropped. */
static int deliver(cr_rqueue_t *q, const cr_redis_reply_t *e, cr_chan_sink_fn sink, void *ud, int *signed_out) {
  size_t idlen;
  const char *id = cr_redis_reply_str(cr_redis_reply_at(e, 0), &idlen);
  const cr_redis_reply_t *f = cr_redis_reply_at(e, 1);
  const char *m = NULL, *s = NULL;
  size_t mlen = 0, slen = 0;
  for (size_t i = 0; i + 1 < cr_redis_reply_len(f); i += 2) {
    size_t kl;
    const char *k = cr_redis_reply_str(cr_redis_reply_at(f, i), &kl);
    if (kl == 1 && k[0] == 'm') m = cr_redis_reply_str(cr_redis_reply_at(f, i + 1), &mlen);
    if (kl == 1 && k[0] == 's') s = cr_redis_reply_str(cr_redis_reply_at(f, i + 1), &slen);
  }
  int good = m && s && q->klen && cr_hmac_check(q->key, q->klen, m, mlen, s, slen);
  if (!m || (q->klen && !good)) {
    if (q->flags & CR_QUEUE_JOINABLE) { /* a Queue's entry is gone already */
      ack(q, 1, &id, &idlen, 0);
    }
    return CR_EAUTH;
  }
  if (q->flags & CR_QUEUE_JOINABLE) {
    int rc = hold(q, id, idlen);
    if (rc < 0) return rc;
  }
  if (signed_out) *signed_out = good;
  return sink ? sink(ud, m, mlen) : 0;
}

/* The entries of arrays a and b (replies the batch now owns; either may be
 * NULL) make the batch, none handed out yet. */
static void batch_set(cr_rqueue_t *q, cr_redis_reply_t *a, cr_redis_reply_t *b) {
  batch_free(q);
  q->bown[0] = a;
  q->bown[1] = b;
  for (int i = 0; i < 2; i++)
    for (size_t j = 0; q->bown[i] && j < cr_redis_reply_len(q->bown[i]) && q->blen < 2 * BATCH_MAX; j++) {
      const cr_redis_reply_t *e = cr_redis_reply_at(q->bown[i], j);
      if (cr_redis_reply_type(e) == CR_REDIS_ARRAY && cr_redis_reply_len(e) == 2) q->bent[q->blen++] = e;
    }
  q->batch = 1;
  q->bat = cr_now();
}

static void fetch_ahead(cr_rqueue_t *q);

/* Lets the batch go, its handed-out entries acknowledged. The rest (taken
 * and never handed out) stay in this consumer's hands until the
 * visibility timeout gives them to another consumer (or this one again). */
static void batch_done(cr_rqueue_t *q) {
  ack_handed(q);
  batch_free(q);
}

/* Hands out the next entry of the batch: as deliver, or CR_EEMPTY when the
 * batch is used up or so old that its entries may be another's by now.
 * The batch's acknowledgement is sent just before its last entry is
 * handed out (its answer is read with the next call's). */
static int from_batch(cr_rqueue_t *q, cr_chan_sink_fn sink, void *ud, int *signed_out) {
  if (!q->batch) return CR_EEMPTY;
  if (q->bnext == q->blen || cr_now() - q->bat > (double)q->vis_ms / 2000.0) {
    batch_done(q);
    return CR_EEMPTY;
  }
  const cr_redis_reply_t *e = q->bent[q->bnext++];
  if (q->bnext < q->blen) return deliver(q, e, sink, ud, signed_out);
  /* a full batch used up fast: take more at once; one used up slowly:
   * fewer (a slow consumer holds back fewer items from the others) */
  double took = cr_now() - q->bat;
  if (took < BATCH_FAST && q->blen >= (size_t)q->count && q->count < BATCH_MAX) q->count *= 2;
  else if (took > BATCH_SLOW && q->count > BATCH) q->count /= 2;
  ack_handed(q);
  if (took < BATCH_FAST) fetch_ahead(q);
  int rc = deliver(q, e, sink, ud, signed_out);
  batch_free(q);
  return rc;
}

/* The entries of arrays a and b (replies that get now owns; b may be
 * NULL): the first is handed out, the rest wait in the batch. */
static int take_entries(cr_rqueue_t *q, cr_redis_reply_t *a, cr_redis_reply_t *b, cr_chan_sink_fn sink, void *ud,
                        int *signed_out) {
  if (q->count == 1) {
    int rc = deliver(q, cr_redis_reply_at(a, 0), sink, ud, signed_out);
    cr_redis_reply_free(a);
    cr_redis_reply_free(b);
    return rc;
  }
  batch_set(q, a, b);
  return from_batch(q, sink, ud, signed_out);
}

/* The entries of a stream read's reply r ({{key, entries}} or nil), taken
 * out of r (which is freed): NULL when there are none. */
static cr_redis_reply_t *read_entries(cr_redis_reply_t *r) {
  cr_redis_reply_t *entries = NULL;
  if (cr_redis_reply_type(r) == CR_REDIS_ARRAY && cr_redis_reply_len(r) > 0) {
    cr_redis_reply_t *stream = cr_redis_reply_detach(r, 0); /* {key, entries} */
    if (cr_redis_reply_len(stream) == 2) entries = cr_redis_reply_detach(stream, 1);
    cr_redis_reply_free(stream);
  }
  cr_redis_reply_free(r);
  if (entries && cr_redis_reply_len(entries) == 0) {
    cr_redis_reply_free(entries);
    entries = NULL;
  }
  return entries;
}

/* A server-side block of at most `slice` seconds for the next entries:
 * 0 with *out an array of entries (a reply of its own), CR_EEMPTY when
 * none came, or a connection code. */
static int block_read(cr_rqueue_t *q, double slice, double retry, cr_redis_reply_t **out) {
  char ms[32], count[16];
  long long m = (long long)(slice * 1000);
  snprintf(ms, sizeof ms, "%lld", m < 1 ? 1 : m);
  snprintf(count, sizeof count, "%d", q->count);
  const char *argv[] = {"XREADGROUP", "GROUP", "g", q->consumer, "COUNT", count, "BLOCK", ms, "STREAMS", q->stream, ">"};
  size_t lens[11];
  for (int i = 0; i < 11; i++) lens[i] = strlen(argv[i]);
  cr_redis_reply_t *r;
  int rc = cr_redis_call(q->c, 11, argv, lens, slice, retry, &r);
  if (rc < 0) return rc;
  *out = read_entries(r);
  return *out ? 0 : CR_EEMPTY;
}

/* An unbounded Queue's fetch without a script, in one round trip: the
 * entries idle past the visibility timeout in another consumer's hands
 * (XAUTOCLAIM) and the next ones not yet delivered (XREADGROUP),
 * together. Fills argc, argv, lens (the words in the bufs) for the two
 * commands. */
typedef struct {
  char vis[32], count[16];
  const char *claim[8], *read[9];
  size_t clens[8], rlens[9];
  int argc[2];
  const char *const *argv[2];
  const size_t *lens[2];
} fetch_cmds_t;

static void fetch_cmds(cr_rqueue_t *q, fetch_cmds_t *f) {
  snprintf(f->vis, sizeof f->vis, "%lld", q->vis_ms);
  snprintf(f->count, sizeof f->count, "%d", q->count);
  const char *claim[] = {"XAUTOCLAIM", q->stream, "g", q->consumer, f->vis, "0-0", "COUNT", f->count};
  const char *read[] = {"XREADGROUP", "GROUP", "g", q->consumer, "COUNT", f->count, "STREAMS", q->stream, ">"};
  memcpy(f->claim, claim, sizeof claim);
  memcpy(f->read, read, sizeof read);
  for (int i = 0; i < 8; i++) f->clens[i] = strlen(claim[i]);
  for (int i = 0; i < 9; i++) f->rlens[i] = strlen(read[i]);
  f->argc[0] = 8, f->argc[1] = 9;
  f->argv[0] = f->claim, f->argv[1] = f->read;
  f->lens[0] = f->clens, f->lens[1] = f->rlens;
}

/* The replies r of a fetch (which get now owns): 0 with the batch taken
 * and its first entry handed out (as deliver); CR_EEMPTY when none came,
 * or the stream or its group is missing (the GET script makes them). */
static int take_fetched(cr_rqueue_t *q, cr_redis_reply_t **r, cr_chan_sink_fn sink, void *ud, int *signed_out) {
  cr_redis_reply_t *claimed = NULL; /* {cursor, entries, deleted ids} */
  if (cr_redis_reply_type(r[0]) == CR_REDIS_ARRAY && cr_redis_reply_len(r[0]) >= 2 &&
      cr_redis_reply_len(cr_redis_reply_at(r[0], 1)) > 0)
    claimed = cr_redis_reply_detach(r[0], 1);
  cr_redis_reply_free(r[0]);
  cr_redis_reply_t *fresh = read_entries(r[1]);
  if (!claimed && !fresh) return CR_EEMPTY;
  return take_entries(q, claimed ? claimed : fresh, claimed ? fresh : NULL, sink, ud, signed_out);
}

/* A fetch now (with the last batch's acknowledgement, sent ahead):
 * as take_fetched, or a connection code. */
static int fetch(cr_rqueue_t *q, cr_chan_sink_fn sink, void *ud, double retry, int *signed_out) {
  fetch_cmds_t f;
  fetch_cmds(q, &f);
  cr_redis_reply_t *r[2];
  int rc = cr__redis_pipe(q->c, 2, f.argc, f.argv, f.lens, 0, retry, r);
  if (rc < 0) return rc;
  return take_fetched(q, r, sink, ud, signed_out);
}

/* A consumer that used up its batch fast sends its next fetch as it hands
 * out the batch's last entry, so the server works on it while the caller
 * works on that entry (the entries are in this consumer's hands from then
 * on, as a batch's). */
static void fetch_ahead(cr_rqueue_t *q) {
  fetch_cmds_t f;
  fetch_cmds(q, &f);
  if (cr__redis_send(q->c, f.argc[0], f.claim, f.clens, CR__SEND_KEEP | CR__SEND_MORE) < 0) return;
  if (cr__redis_send(q->c, f.argc[1], f.read, f.rlens, CR__SEND_KEEP) < 0) return;
  q->ahead = 1;
  q->ahead_at = cr_now();
}

/* The fetch sent ahead: as take_fetched (the batch dated from when it was
 * sent), or a connection code. */
static int fetched_ahead(cr_rqueue_t *q, cr_chan_sink_fn sink, void *ud, double retry, int *signed_out) {
  q->ahead = 0;
  cr_redis_reply_t *r[2];
  int rc = cr__redis_kept(q->c, 2, retry, r);
  if (rc < 0) return rc;
  double at = q->ahead_at;
  rc = take_fetched(q, r, sink, ud, signed_out);
  if (q->batch) q->bat = at;
  return rc;
}

/* As the handle goes: the entries of the batch handed out are
 * acknowledged, and those it holds and never handed out (the batch's
 * rest, a fetch sent ahead) are given back: their idle time set to the
 * visibility timeout (XCLAIM ... IDLE JUSTID), so that any consumer takes
 * them at once rather than after the timeout. One try: a failure leaves
 * them to the timeout. */
static void give_back(cr_rqueue_t *q) {
  if (q->ahead) {
    q->ahead = 0;
    cr_redis_reply_t *r[2];
    if (cr__redis_kept(q->c, 2, 0, r) == 0) {
      cr_redis_reply_t *claimed = NULL;
      if (cr_redis_reply_type(r[0]) == CR_REDIS_ARRAY && cr_redis_reply_len(r[0]) >= 2)
        claimed = cr_redis_reply_detach(r[0], 1);
      cr_redis_reply_free(r[0]);
      cr_redis_reply_t *fresh = read_entries(r[1]);
      if (q->batch) batch_done(q);
      if (claimed || fresh) batch_set(q, claimed, fresh); /* a batch none of which was handed out */
    }
  }
  if (!q->batch) return;
  ack_handed(q);
  size_t n = q->blen - q->bnext;
  if (n > 0) {
    char idle[32];
    snprintf(idle, sizeof idle, "%lld", q->vis_ms);
    const char *av[2 * BATCH_MAX + 8];
    size_t al[2 * BATCH_MAX + 8];
    int k = 0;
    av[k++] = "XCLAIM", av[k++] = q->stream, av[k++] = "g", av[k++] = q->consumer, av[k++] = "0";
    for (size_t i = 0; i < n; i++) {
      size_t len;
      av[k] = cr_redis_reply_str(cr_redis_reply_at(q->bent[q->bnext + i], 0), &len);
      al[k++] = len;
    }
    av[k++] = "IDLE", av[k++] = idle, av[k++] = "JUSTID";
    for (int i = 0; i < k; i++)
      if (i < 5 || i >= k - 3) al[i] = strlen(av[i]);
    cr_redis_reply_t *r;
    if (cr_redis_call(q->c, k, av, al, 0, 0, &r) == 0) cr_redis_reply_free(r);
  }
  batch_free(q);
}

int cr_rqueue_get(cr_rqueue_t *q, cr_chan_sink_fn sink, void *ud, double timeout, int *signed_out) {
  own(q);
  flush(q);
  if (signed_out) *signed_out = 0;
  int rc = from_batch(q, sink, ud, signed_out);
  if (rc != CR_EEMPTY) return rc;
  double deadline = deadline_of(timeout);
  if (q->count > 1) {
    cr_intr_begin();
    if (q->ahead) rc = fetched_ahead(q, sink, ud, budget(deadline), signed_out); /* empty: to the script */
    else rc = fetch(q, sink, ud, budget(deadline), signed_out);
    cr_intr_end();
    if (rc != CR_EEMPTY) return rc;
  }
  char vis[32], count[16];
  snprintf(vis, sizeof vis, "%lld", q->vis_ms);
  snprintf(count, sizeof count, "%d", q->count);
  int ack_now = !(q->flags & CR_QUEUE_JOINABLE) && q->count == 1;
  const char *argv[4] = {q->consumer, vis, ack_now ? "1" : "0", count};
  size_t lens[4] = {strlen(q->consumer), strlen(vis), 1, strlen(count)};
  cr_intr_begin();
  for (;;) {
    cr_redis_reply_t *r;
    rc = run(q, GET, 4, argv, lens, budget(deadline), &r);
    if (rc < 0) break;
    if (cr_redis_reply_type(r) == CR_REDIS_ARRAY) {
      rc = take_entries(q, r, NULL, sink, ud, signed_out);
      break;
    }
    long long closed = cr_redis_reply_int(r);
    cr_redis_reply_free(r);
    if (closed) {
      rc = CR_ECLOSED;
      break;
    }
    if (cr_intr_pending()) {
      rc = CR_EINTR;
      break;
    }
    double left = deadline - cr_now();
    if (left <= 0) {
      rc = CR_EEMPTY;
      break;
    }
    rc = block_read(q, left < SLICE ? left : SLICE, budget(deadline), &r);
    if (rc == CR_EREDIS && strstr(cr_redis_strerror(q->c), "NOGROUP")) continue; /* made again by GET */
    if (rc == CR_EEMPTY) continue;
    if (rc < 0) break;
    if (ack_now) {
      /* taken into this consumer's hands: acknowledge it now (a death
       * before that leaves it to the visibility timeout, not lost) */
      size_t idlen;
      const char *id = cr_redis_reply_str(cr_redis_reply_at(cr_redis_reply_at(r, 0), 0), &idlen);
      ack(q, 1, &id, &idlen, 0);
    }
    rc = take_entries(q, r, NULL, sink, ud, signed_out);
    break;
  }
  cr_intr_end();
  return rc;
}

static int sizes(cr_rqueue_t *q, int64_t *len, int64_t *pending) {
  flush(q);
  cr_redis_reply_t *r;
  int rc = run(q, SIZE, 0, NULL, NULL, -1, &r);
  if (rc < 0) return rc;
  *len = cr_redis_reply_int(cr_redis_reply_at(r, 0));
  *pending = cr_redis_reply_int(cr_redis_reply_at(r, 1));
  cr_redis_reply_free(r);
  return 0;
}

int64_t cr_rqueue_size(cr_rqueue_t *q) {
  int64_t n, p;
  int rc = sizes(q, &n, &p);
  return rc < 0 ? rc : n - p;
}

int64_t cr_rqueue_unfinished(cr_rqueue_t *q) {
  int64_t n, p;
  int rc = sizes(q, &n, &p);
  return rc < 0 ? rc : n;
}

int cr_rqueue_close(cr_rqueue_t *q) {
  flush(q);
  const char *argv[] = {"SET", q->closed, "1"};
  size_t lens[] = {3, strlen(q->closed), 1};
  cr_redis_reply_t *r;
  int rc = cr_redis_call(q->c, 3, argv, lens, 0, -1, &r);
  if (rc == 0) cr_redis_reply_free(r);
  return rc;
}

int cr_rqueue_is_closed(cr_rqueue_t *q) {
  flush(q);
  const char *argv[] = {"EXISTS", q->closed};
  size_t lens[] = {6, strlen(q->closed)};
  cr_redis_reply_t *r;
  int rc = cr_redis_call(q->c, 2, argv, lens, 0, -1, &r);
  if (rc < 0) return rc;
  rc = cr_redis_reply_int(r) != 0;
  cr_redis_reply_free(r);
  return rc;
}

int cr_rqueue_task_done(cr_rqueue_t *q) {
  if (!(q->flags & CR_QUEUE_JOINABLE)) return CR_EINVAL;
  own(q);
  if (q->hhead == q->nheld) return CR_ETOOMANY;
  const char *id = q->held[q->hhead].id;
  size_t len = strlen(id);
  int rc = ack(q, 1, &id, &len, 0);
  if (rc < 0) return rc;
  q->hhead++;
  return 0;
}

int cr_rqueue_join(cr_rqueue_t *q, double timeout) {
  double deadline = deadline_of(timeout), poll = POLL_MIN;
  int rc;
  cr_intr_begin();
  for (;;) {
    int64_t n, p;
    rc = sizes(q, &n, &p);
    if (rc < 0) break;
    if (n == 0) break;
    int w = poll_pause(deadline, &poll);
    if (w != 0) {
      rc = w == 1 ? CR_ETIMEDOUT : w;
      break;
    }
  }
  cr_intr_end();
  return rc;
}
