/* corral engine: the feeder thread of an unbounded Redis Queue (see
 * redis_int.h). Items wait in a list under a mutex; the thread takes up to
 * FEED_BATCH of them, appends them to the stream with one script call,
 * and frees them once the server answered. A lost connection is retried
 * (the call reconnects) until the items are sent or the feeder stops; a
 * stopping feeder whose send fails (its connection's reconnect budget
 * spent) drops what it still holds, saying how many. At the process's
 * exit, feeders still running are stopped and flushed (an os.exit skips
 * the Lua state's collection, not the C library's exit handlers), so a
 * process whose server is gone still ends.
 *
 * Fork. No feeder of the process may be inside a send, which allocates,
 * while the process forks: under an allocator whose locks do not survive
 * fork (ASan's) the child's own allocations would then wait for ever.
 * A feeder is only ever started whole (cr__feed_start waits for its
 * thread to run), and before a fork each feeder is paused between two
 * batches (waiting at most FORK_WAIT seconds for the one it is sending)
 * and its lock held; both sides let go after. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "corral/errors.h"
#include "corral/proc.h"
#include "corral/redis.h"
#include "redis_int.h"

#define FEED_BATCH 256    /* items in one script call */
#define FEED_MAX   100000 /* items waiting before put waits */
#define FORK_WAIT  1      /* seconds a fork waits for a batch being sent */

typedef struct item {
  struct item *next;
  size_t len, siglen;
  unsigned char sig[CR_HMAC_LEN];
  char data[];
} item_t;

struct cr__feed {
  pthread_mutex_t mu;
  pthread_cond_t work, done;
  item_t *head, *tail;
  size_t n;
  int busy, stop, closed;
  int started; /* the thread runs its own code: a fork no longer finds it starting */
  int forking; /* locked by fork_prepare: no new batch until the fork is over */
  int pid;
  pthread_t thread;
  cr_redis_t *c;
  char *stream, *closed_key;
  struct cr__feed *next_live; /* the process's live feeders, for exit */
};

/* ARGV: item, signature ("" for none), ... -> 1, or -1 when closed (nothing added) */
static const char PUTMANY[] =
  "if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('XGROUP', 'CREATE', KEYS[1], 'g', '0', 'MKSTREAM') end "
  "if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end "
  "for i = 1, #ARGV, 2 do "
  "  if ARGV[i + 1] ~= '' then redis.call('XADD', KEYS[1], '*', 'm', ARGV[i], 's', ARGV[i + 1]) "
  "  else redis.call('XADD', KEYS[1], '*', 'm', ARGV[i]) end "
  "end "
  "return 1";

static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static cr__feed_t *live;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

/* Frees a chain of items; returns how many. */
static size_t free_chain(item_t *it) {
  size_t n = 0;
  for (item_t *nx; it; it = nx, n++) {
    nx = it->next;
    free(it);
  }
  return n;
}

/* Tells f's thread to stop once what it holds is sent (or given up). */
static void ask_stop(cr__feed_t *f) {
  pthread_mutex_lock(&f->mu);
  f->stop = 1;
  pthread_cond_signal(&f->work);
  pthread_mutex_unlock(&f->mu);
}

static void flush_all_at_exit(void) {
  pthread_mutex_lock(&live_mu);
  for (cr__feed_t *f = live; f; f = f->next_live) {
    if (f->pid != getpid()) continue;
    ask_stop(f); /* what cannot be sent within the budget is dropped */
    cr__feed_flush(f);
  }
  pthread_mutex_unlock(&live_mu);
}

static void fork_prepare(void) {
  pthread_mutex_lock(&live_mu);
  for (cr__feed_t *f = live; f; f = f->next_live) {
    if (f->pid != getpid()) continue;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += FORK_WAIT;
    pthread_mutex_lock(&f->mu);
    f->forking = 1;
    while (f->busy && pthread_cond_timedwait(&f->done, &f->mu, &until) == 0) {
    }
  }
}

/* After a fork, in the parent and in the child: each lock fork_prepare
 * took is let go (the child's copies too: they are never used there). */
static void fork_after(void) {
  for (cr__feed_t *f = live; f; f = f->next_live) {
    if (!f->forking) continue;
    f->forking = 0;
    pthread_cond_signal(&f->work);
    pthread_mutex_unlock(&f->mu);
  }
  pthread_mutex_unlock(&live_mu);
}

static void register_exit(void) {
  atexit(flush_all_at_exit);
  cr_proc_on_child_exit(flush_all_at_exit); /* a forked child ends with _exit */
  pthread_atfork(fork_prepare, fork_after, fork_after);
}

/* Sends one batch (the thread, without the lock). Returns 1 sent, 0 the
 * queue is closed (the items are dropped, as a put racing with close), -1
 * given up (stopping, or refused: the items are dropped, said on stderr). */
static int send_batch(cr__feed_t *f, item_t *chain, size_t k) {
  const char **argv = malloc(2 * (k + 1) * (sizeof *argv + sizeof(size_t)));
  if (!argv) return 1; /* dropped: out of memory */
  size_t *lens = (size_t *)(argv + 2 * (k + 1));
  argv[0] = f->stream, lens[0] = strlen(f->stream);
  argv[1] = f->closed_key, lens[1] = strlen(f->closed_key);
  size_t i = 2;
  for (item_t *it = chain; it; it = it->next) {
    argv[i] = it->data, lens[i++] = it->len;
    argv[i] = (const char *)it->sig, lens[i++] = it->siglen;
  }
  int sent = 1;
  for (;;) {
    cr_redis_reply_t *r;
    int rc = cr_redis_eval(f->c, PUTMANY, 2, (int)i, argv, lens, -1, &r);
    if (rc == 0) {
      sent = cr_redis_reply_int(r) > 0;
      cr_redis_reply_free(r);
      break;
    }
    pthread_mutex_lock(&f->mu);
    int stopping = f->stop;
    pthread_mutex_unlock(&f->mu);
    if (stopping || rc == CR_EAUTH || rc == CR_EREDIS) {
      fprintf(stderr, "corral: %s: %zu queue items could not be sent\n", cr_redis_strerror(f->c), k);
      sent = -1;
      break;
    }
  }
  free(argv);
  return sent;
}

static void *feed_main(void *arg) {
  cr__feed_t *f = arg;
  pthread_mutex_lock(&f->mu);
  f->started = 1;
  pthread_cond_broadcast(&f->done);
  for (;;) {
    while ((!f->head || f->forking) && !f->stop) pthread_cond_wait(&f->work, &f->mu);
    if (!f->head) break; /* stopping, and nothing left */
    item_t *chain = f->head, *last = chain;
    size_t k = 1;
    while (k < FEED_BATCH && last->next) last = last->next, k++;
    f->head = last->next;
    if (!f->head) f->tail = NULL;
    last->next = NULL;
    f->n -= k;
    f->busy = 1;
    pthread_mutex_unlock(&f->mu);
    int sent = send_batch(f, chain, k);
    free_chain(chain);
    pthread_mutex_lock(&f->mu);
    if (!sent) f->closed = 1;
    if (sent < 0 && f->stop && f->head) { /* stopping and the server is out of reach: drop the rest */
      size_t dropped = free_chain(f->head);
      f->head = f->tail = NULL;
      f->n = 0;
      fprintf(stderr, "corral: %s: %zu more queue items could not be sent\n", cr_redis_strerror(f->c), dropped);
    }
    f->busy = 0;
    pthread_cond_broadcast(&f->done);
  }
  pthread_mutex_unlock(&f->mu);
  return NULL;
}

int cr__feed_start(const cr_redis_t *c, const char *stream, const char *closed, cr__feed_t **out) {
  *out = NULL;
  cr__feed_t *f = calloc(1, sizeof *f);
  if (!f) return CR_ENOMEM;
  f->stream = strdup(stream);
  f->closed_key = strdup(closed);
  int rc = f->stream && f->closed_key ? cr__redis_clone(c, &f->c) : CR_ENOMEM;
  if (rc == 0) {
    pthread_condattr_t mono; /* fork_prepare's bounded wait is on the monotonic clock */
    pthread_condattr_init(&mono);
    pthread_condattr_setclock(&mono, CLOCK_MONOTONIC);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->work, NULL);
    pthread_cond_init(&f->done, &mono);
    pthread_condattr_destroy(&mono);
    f->pid = getpid();
    rc = -pthread_create(&f->thread, NULL, feed_main, f);
  }
  if (rc < 0) {
    if (f->c) cr_redis_free(f->c);
    free(f->stream);
    free(f->closed_key);
    free(f);
    return rc;
  }
  /* A thread still being set up may hold its allocator's locks (ASan's):
   * it must not be copied so by a fork that comes right after. */
  pthread_mutex_lock(&f->mu);
  while (!f->started) pthread_cond_wait(&f->done, &f->mu);
  pthread_mutex_unlock(&f->mu);
  pthread_once(&exit_once, register_exit);
  pthread_mutex_lock(&live_mu);
  f->next_live = live;
  live = f;
  pthread_mutex_unlock(&live_mu);
  *out = f;
  return 0;
}

int cr__feed_mine(const cr__feed_t *f) { return f->pid == getpid(); }

int cr__feed_put(cr__feed_t *f, const void *data, size_t len, const void *sig, size_t siglen) {
  item_t *it = malloc(sizeof *it + len);
  if (!it) return CR_ENOMEM;
  it->next = NULL;
  it->len = len;
  it->siglen = siglen;
  if (siglen) memcpy(it->sig, sig, siglen);
  memcpy(it->data, data, len);
  pthread_mutex_lock(&f->mu);
  while (f->n >= FEED_MAX && !f->closed) pthread_cond_wait(&f->done, &f->mu);
  if (f->closed) {
    pthread_mutex_unlock(&f->mu);
    free(it);
    return CR_ECLOSED;
  }
  if (f->tail) f->tail->next = it;
  else f->head = it;
  f->tail = it;
  f->n++;
  pthread_cond_signal(&f->work);
  pthread_mutex_unlock(&f->mu);
  return 0;
}

void cr__feed_flush(cr__feed_t *f) {
  pthread_mutex_lock(&f->mu);
  while (f->head || f->busy) pthread_cond_wait(&f->done, &f->mu);
  pthread_mutex_unlock(&f->mu);
}

void cr__feed_stop(cr__feed_t *f) {
  if (!f || !cr__feed_mine(f)) return; /* a forked copy: the parent's thread */
  pthread_mutex_lock(&live_mu);
  for (cr__feed_t **p = &live; *p; p = &(*p)->next_live)
    if (*p == f) {
      *p = f->next_live;
      break;
    }
  pthread_mutex_unlock(&live_mu);
  ask_stop(f);
  pthread_join(f->thread, NULL);
  pthread_mutex_destroy(&f->mu);
  pthread_cond_destroy(&f->work);
  pthread_cond_destroy(&f->done);
  cr_redis_free(f->c);
  free(f->stream);
  free(f->closed_key);
  free(f);
}
