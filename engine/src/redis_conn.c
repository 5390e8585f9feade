/* corral engine: a connection to a Redis server (see corral/redis.h),
 * HMAC signing, and the heartbeat thread. */
#define _GNU_SOURCE
#include <errno.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "corral/engine.h"
#include "corral/errors.h"
#include "corral/redis.h"
#include "redis_int.h"

#define OWED_MAX 8 /* commands sent ahead at most */

struct cr_redis {
  redisContext *ctx; /* NULL while disconnected */
  int pid;           /* the process that owns ctx */
  char *url;         /* without the password */
  char *host, *user, *pass, *path;
  int port;
  double connect_timeout, retry;
  char err[512];
  /* Commands sent ahead (cr__redis_send) whose replies were not read yet:
   * formatted, to be written again on a new connection. */
  char *owed;
  size_t owed_len;
  int nowed;
  unsigned char keep[OWED_MAX]; /* whose reply is wanted (cr__redis_kept) */
  int owed_pid; /* the process they are for (a forked child drops its parent's) */
  int owed_out; /* written on the current connection */
  redisReply *kept[OWED_MAX]; /* wanted replies read, not taken yet */
  int nkept;
};

double cr__redis_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cr__redis_sleep(double s) {
  if (s <= 0) return;
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

static struct timeval tv_of(double s) {
  struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
  return tv;
}

static void set_err(cr_redis_t *c, const char *fmt, ...) {
  int n = snprintf(c->err, sizeof c->err, "%s: ", c->url);
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof c->err) vsnprintf(c->err + n, sizeof c->err - (size_t)n, fmt, ap);
  va_end(ap);
}

static char *dup_n(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = 0;
  }
  return p;
}

/* Parses redis://[[user]:password@]host[:port][/path] into c. */
static int parse_url(cr_redis_t *c, const char *url) {
  const char *p = url;
  if (strncmp(p, "redis://", 8) != 0) return CR_EINVAL;
  p += 8;
  const char *slash = strchr(p, '/');
  const char *end = slash ? slash : p + strlen(p);
  const char *at = memrchr(p, '@', (size_t)(end - p));
  const char *hp = p;
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon) {
      if (colon > p) c->user = dup_n(p, (size_t)(colon - p));
      c->pass = dup_n(colon + 1, (size_t)(at - colon - 1));
    } else {
      c->pass = dup_n(p, (size_t)(at - p));
    }
    hp = at + 1;
  }
  const char *host_end = end;
  if (*hp == '[') { /* [::1]:port */
    const char *rb = memchr(hp, ']', (size_t)(end - hp));
    if (!rb) return CR_EINVAL;
    c->host = dup_n(hp + 1, (size_t)(rb - hp - 1));
    host_end = rb + 1;
  } else {
    const char *colon = memchr(hp, ':', (size_t)(end - hp));
    if (colon) host_end = colon;
    c->host = dup_n(hp, (size_t)(host_end - hp));
  }
  c->port = 6379;
  if (host_end < end && *host_end == ':') {
    char *e;
    long port = strtol(host_end + 1, &e, 10);
    if (e != end || port <= 0 || port > 65535) return CR_EINVAL;
    c->port = (int)port;
  }
  if (!c->host || !*c->host) return CR_EINVAL;
  c->path = slash ? strdup(slash + 1) : strdup("");
  /* the url as shown: without the password */
  size_t n = strlen(url) + 1;
  c->url = malloc(n);
  if (!c->url || !c->path) return CR_ENOMEM;
  if (at) snprintf(c->url, n, "redis://%s%s%.*s", c->user ? c->user : "", c->user ? "@" : "", (int)(strlen(at + 1)), at + 1);
  else memcpy(c->url, url, n);
  return 0;
}

/* Connects (and authenticates) once; 0 or a code, message in c->err. */
static int connect_once(cr_redis_t *c) {
  if (c->ctx) {
    redisFree(c->ctx);
    c->ctx = NULL;
  }
  redisContext *ctx = redisConnectWithTimeout(c->host, c->port, tv_of(c->connect_timeout));
  if (!ctx) {
    set_err(c, "cannot connect: out of memory");
    return CR_ENOMEM;
  }
  if (ctx->err) {
    int e = ctx->err;
    const char *why = ctx->errstr;
    if (e == REDIS_ERR_IO && errno == ECONNREFUSED) why = "connection refused";
    set_err(c, "cannot connect: %s (is a Redis server running there?)", why);
    redisFree(ctx);
    return CR_ECONN;
  }
  redisSetTimeout(ctx, tv_of(c->connect_timeout));
  redisEnableKeepAlive(ctx);
  c->ctx = ctx;
  c->pid = getpid();
  c->owed_out = 0;
  redisReply *r = NULL;
  if (c->pass) {
    if (c->user) r = redisCommand(ctx, "AUTH %s %s", c->user, c->pass);
    else r = redisCommand(ctx, "AUTH %s", c->pass);
  } else {
    r = redisCommand(ctx, "PING");
  }
  int rc = 0;
  if (!r) {
    set_err(c, "no answer from the server: %s", ctx->errstr);
    rc = CR_ECONN;
  } else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "LOADING", 7) == 0) {
    set_err(c, "the server is loading its data");
    rc = CR_ECONN; /* comes back soon: retried like a lost connection */
  } else if (r->type == REDIS_REPLY_ERROR) {
    if (strncmp(r->str, "NOAUTH", 6) == 0)
      set_err(c, "the server requires a password (give it in the url: redis://:PASSWORD@host:port)");
    else
      set_err(c, "authentication refused: %s", r->str);
    rc = CR_EAUTH;
  }
  if (r) freeReplyObject(r);
  if (rc < 0) {
    redisFree(c->ctx);
    c->ctx = NULL;
  }
  return rc;
}

int cr_redis_open(const char *url, double timeout, cr_redis_t **out, char *err, size_t errlen) {
  *out = NULL;
  cr_redis_t *c = calloc(1, sizeof *c);
  if (!c) return CR_ENOMEM;
  c->connect_timeout = timeout < 0 ? 5.0 : timeout > 0 ? timeout : 0.001;
  c->retry = CR_REDIS_RETRY;
  int rc = parse_url(c, url);
  if (rc == CR_EINVAL && err) snprintf(err, errlen, "%s: not a redis url (redis://[:password@]host[:port][/name])", url);
  if (rc == 0) {
    /* a server loading its data answers soon: wait for it, within the timeout */
    double give_up = cr__redis_now() + c->connect_timeout;
    while ((rc = connect_once(c)) == CR_ECONN && strstr(c->err, "loading") && cr__redis_now() < give_up)
      cr__redis_sleep(0.01);
    if (rc < 0 && err) snprintf(err, errlen, "%s", c->err);
  }
  if (rc < 0) {
    if (rc == CR_ENOMEM && err) snprintf(err, errlen, "%s: out of memory", url);
    cr_redis_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

static void drop_owed(cr_redis_t *c) {
  free(c->owed);
  c->owed = NULL;
  c->owed_len = 0;
  c->nowed = 0;
  c->owed_out = 0;
}

static void drop_kept(cr_redis_t *c) {
  for (int i = 0; i < c->nkept; i++) freeReplyObject(c->kept[i]);
  c->nkept = 0;
}

/* What was sent ahead and kept belongs to the process that sent it: a
 * forked child starts without. */
static void own_owed(cr_redis_t *c) {
  if (c->owed_pid == getpid()) return;
  drop_owed(c);
  drop_kept(c);
  c->owed_pid = getpid();
}

void cr_redis_free(cr_redis_t *c) {
  if (!c) return;
  if (c->nowed && c->owed_pid == getpid()) { /* what was sent ahead is answered first: one try */
    cr_redis_reply_t *none;
    cr__redis_pipe(c, 0, NULL, NULL, NULL, 0, 0, &none);
  }
  drop_owed(c);
  drop_kept(c);
  if (c->ctx) redisFree(c->ctx); /* in a forked child too: closes only its copy of the socket */
  free(c->url);
  free(c->host);
  free(c->user);
  free(c->pass);
  free(c->path);
  free(c);
}

const char *cr_redis_url(const cr_redis_t *c) { return c->url; }
const char *cr_redis_path(const cr_redis_t *c) { return c->path; }
const char *cr_redis_strerror(const cr_redis_t *c) { return c->err; }
void cr_redis_set_retry(cr_redis_t *c, double seconds) { c->retry = seconds; }

int cr__redis_clone(const cr_redis_t *c, cr_redis_t **out) {
  cr_redis_t *n = calloc(1, sizeof *n);
  if (!n) return CR_ENOMEM;
  n->url = strdup(c->url);
  n->host = strdup(c->host);
  n->user = c->user ? strdup(c->user) : NULL;
  n->pass = c->pass ? strdup(c->pass) : NULL;
  n->path = strdup(c->path);
  n->port = c->port;
  n->connect_timeout = c->connect_timeout;
  n->retry = c->retry;
  *out = n;
  return 0;
}

/* Writes what is buffered in ctx: 0, or -1 when the connection broke. */
static int write_out(redisContext *ctx) {
  int done = 0;
  do {
    if (redisBufferWrite(ctx, &done) == REDIS_ERR) return -1;
  } while (!done);
  return 0;
}

int cr__redis_send(cr_redis_t *c, int argc, const char **argv, const size_t *lens, unsigned flags) {
  own_owed(c);
  if (c->nowed == OWED_MAX) { /* the oldest answered first */
    cr_redis_reply_t *none;
    int rc = cr__redis_pipe(c, 0, NULL, NULL, NULL, 0, -1, &none);
    if (rc < 0) return rc;
  }
  char *cmd;
  long long len = redisFormatCommandArgv(&cmd, argc, argv, lens);
  if (len < 0) return CR_ENOMEM;
  char *all = realloc(c->owed, c->owed_len + (size_t)len);
  if (!all) {
    redisFreeCommand(cmd);
    return CR_ENOMEM;
  }
  memcpy(all + c->owed_len, cmd, (size_t)len);
  c->owed = all;
  c->owed_len += (size_t)len;
  c->keep[c->nowed++] = (unsigned char)((flags & CR__SEND_KEEP) != 0);
  if (c->ctx && c->pid == getpid()) {
    if (c->owed_out) redisAppendFormattedCommand(c->ctx, cmd, (size_t)len);
    else redisAppendFormattedCommand(c->ctx, c->owed, c->owed_len);
    c->owed_out = 1;
    if (!(flags & CR__SEND_MORE) && write_out(c->ctx) < 0) { /* written again, and answered, on the next connection */
      set_err(c, "connection lost: %s", c->ctx->errstr);
      redisFree(c->ctx);
      c->ctx = NULL;
    }
  }
  redisFreeCommand(cmd);
  return 0;
}

int cr__redis_pipe(cr_redis_t *c, int n, const int *argc, const char *const *argv[], const size_t *const lens[],
                   double block, double retry, cr_redis_reply_t **out) {
  for (int i = 0; i < n; i++) out[i] = NULL;
  double give_up = cr__redis_now() + (retry < 0 ? c->retry : retry);
  double backoff = 0.01;
  int tries = 0;
  own_owed(c);
  for (;;) {
    int rc = 0;
    if (c->ctx && c->pid != getpid()) { /* a forked child: its own socket */
      redisFree(c->ctx);
      c->ctx = NULL;
    }
    if (!c->ctx) rc = connect_once(c);
    if (rc == CR_EAUTH || rc == CR_ENOMEM) return rc;
    if (rc == 0) {
      redisSetTimeout(c->ctx, tv_of(block + c->connect_timeout));
      if (c->nowed && !c->owed_out) redisAppendFormattedCommand(c->ctx, c->owed, c->owed_len);
      c->owed_out = 1;
      for (int i = 0; i < n; i++)
        if (redisAppendCommandArgv(c->ctx, argc[i], (const char **)argv[i], lens[i]) != REDIS_OK) {
          redisFree(c->ctx); /* half a pipeline buffered: never sent */
          c->ctx = NULL;
          return CR_ENOMEM;
        }
      int lost = 0, got = 0, nk = 0;
      redisReply *kept[OWED_MAX];
      for (int i = 0; i < c->nowed && !lost; i++) { /* the answers to what was sent ahead */
        void *r;
        if (redisGetReply(c->ctx, &r) != REDIS_OK) lost = 1;
        else if (c->keep[i] && c->nkept + nk < OWED_MAX) kept[nk++] = r;
        else freeReplyObject(r);
      }
      if (lost) { /* all sent again on the next connection */
        while (nk > 0) freeReplyObject(kept[--nk]);
      } else {
        for (int i = 0; i < nk; i++) c->kept[c->nkept++] = kept[i];
        drop_owed(c);
      }
      while (!lost && got < n) {
        void *r;
        if (redisGetReply(c->ctx, &r) != REDIS_OK) lost = 1;
        else out[got++] = r;
      }
      if (!lost) {
        int loading = 0, auth = 0;
        for (int i = 0; i < n; i++) {
          const redisReply *r = (const redisReply *)out[i];
          if (r->type != REDIS_REPLY_ERROR) continue;
          loading |= strncmp(r->str, "LOADING", 7) == 0;
          auth |= strncmp(r->str, "NOAUTH", 6) == 0 || strncmp(r->str, "WRONGPASS", 9) == 0;
        }
        if (!loading && !auth) return 0;
        for (int i = 0; i < n; i++) {
          freeReplyObject(out[i]);
          out[i] = NULL;
        }
        if (auth) {
          set_err(c, "the server requires a password (give it in the url: redis://:PASSWORD@host:port)");
          return CR_EAUTH;
        }
        set_err(c, "the server is loading its data");
        goto retry; /* a server starting again: wait for it as for a lost connection */
      }
      for (int i = 0; i < got; i++) {
        freeReplyObject(out[i]);
        out[i] = NULL;
      }
      set_err(c, "connection lost: %s", c->ctx->errstr);
      redisFree(c->ctx);
      c->ctx = NULL;
    }
  retry:;
    double now = cr__redis_now();
    if (now >= give_up && tries > 0) {
      size_t len = strlen(c->err);
      if (len + 1 < sizeof c->err)
        snprintf(c->err + len, sizeof c->err - len, " (gave up reconnecting after %.1f s)", retry < 0 ? c->retry : retry);
      return CR_ECONN;
    }
    tries++;
    double d = backoff < give_up - now ? backoff : give_up - now;
    cr__redis_sleep(d);
    backoff = backoff * 2 > 0.5 ? 0.5 : backoff * 2;
  }
}

int cr__redis_kept(cr_redis_t *c, int n, double retry, cr_redis_reply_t **out) {
  own_owed(c);
  if (c->nkept < n && c->nowed) {
    cr_redis_reply_t *none;
    int rc = cr__redis_pipe(c, 0, NULL, NULL, NULL, 0, retry, &none);
    if (rc < 0) return rc;
  }
  if (c->nkept < n) return CR_EEMPTY;
  for (int i = 0; i < n; i++) out[i] = (cr_redis_reply_t *)c->kept[i];
  memmove(c->kept, c->kept + n, (size_t)(c->nkept - n) * sizeof c->kept[0]);
  c->nkept -= n;
  return 0;
}

int cr_redis_call(cr_redis_t *c, int argc, const char **argv, const size_t *lens, double block, double retry,
                  cr_redis_reply_t **out) {
  const char *const *av[1] = {argv};
  const size_t *const al[1] = {lens};
  int rc = cr__redis_pipe(c, 1, &argc, av, al, block, retry, out);
  if (rc < 0) return rc;
  const redisReply *r = (const redisReply *)*out;
  if (r->type == REDIS_REPLY_ERROR) {
    set_err(c, "%.*s: %s", (int)lens[0], argv[0], r->str);
    freeReplyObject(*out);
    *out = NULL;
    return CR_EREDIS;
  }
  return 0;
}

void cr_redis_reply_free(cr_redis_reply_t *r) {
  if (r) freeReplyObject((redisReply *)r);
}
int cr_redis_reply_type(const cr_redis_reply_t *r) { return ((const redisReply *)r)->type; }
const char *cr_redis_reply_str(const cr_redis_reply_t *r, size_t *len) {
  const redisReply *x = (const redisReply *)r;
  if (len) *len = x->len;
  return x->str;
}
long long cr_redis_reply_int(const cr_redis_reply_t *r) { return ((const redisReply *)r)->integer; }
size_t cr_redis_reply_len(const cr_redis_reply_t *r) {
  const redisReply *x = (const redisReply *)r;
  return x->type == REDIS_REPLY_ARRAY ? x->elements : 0;
}
const cr_redis_reply_t *cr_redis_reply_at(const cr_redis_reply_t *r, size_t i) {
  return (const cr_redis_reply_t *)((const redisReply *)r)->element[i];
}

cr_redis_reply_t *cr_redis_reply_detach(cr_redis_reply_t *r, size_t i) {
  redisReply *x = (redisReply *)r;
  redisReply *e = x->element[i];
  x->element[i] = NULL; /* freeReplyObject skips it */
  return (cr_redis_reply_t *)e;
}

/* ---- scripts ---------------------------------------------------------------------- */

int cr_redis_eval(cr_redis_t *c, const char *script, int nkeys, int argc, const char **argv, const size_t *lens,
                  double retry, cr_redis_reply_t **out) {
  unsigned char sha[SHA_DIGEST_LENGTH];
  size_t slen = strlen(script);
  SHA1((const unsigned char *)script, slen, sha);
  char hex[2 * SHA_DIGEST_LENGTH + 1];
  for (int i = 0; i < SHA_DIGEST_LENGTH; i++) snprintf(hex + 2 * i, 3, "%02x", sha[i]);
  char nk[16];
  snprintf(nk, sizeof nk, "%d", nkeys);
  const char **av = malloc((size_t)(argc + 3) * (sizeof *av + sizeof(size_t)));
  if (!av) return CR_ENOMEM;
  size_t *al = (size_t *)(av + argc + 3);
  av[0] = "EVALSHA", al[0] = 7;
  av[1] = hex, al[1] = 2 * SHA_DIGEST_LENGTH;
  av[2] = nk, al[2] = strlen(nk);
  for (int i = 0; i < argc; i++) av[3 + i] = argv[i], al[3 + i] = lens[i];
  int rc = cr_redis_call(c, argc + 3, av, al, 0, retry, out);
  if (rc == CR_EREDIS && strstr(c->err, "NOSCRIPT")) {
    av[0] = "EVAL", al[0] = 4;
    av[1] = script, al[1] = slen;
    rc = cr_redis_call(c, argc + 3, av, al, 0, retry, out);
  }
  free(av);
  return rc;
}

/* ---- signing ------------------------------------------------------------------------ */

void cr_hmac_sha256(const void *key, size_t klen, const void *data, size_t len, unsigned char out[CR_HMAC_LEN]) {
  unsigned int n = CR_HMAC_LEN;
  HMAC(EVP_sha256(), key, (int)klen, data, len, out, &n);
}

int cr_hmac_check(const void *key, size_t klen, const void *data, size_t len, const void *sig, size_t siglen) {
  if (siglen != CR_HMAC_LEN) return 0;
  unsigned char mac[CR_HMAC_LEN];
  cr_hmac_sha256(key, klen, data, len, mac);
  return CRYPTO_memcmp(mac, sig, CR_HMAC_LEN) == 0;
}

/* ---- the heartbeat -------------------------------------------------------------------- */

struct cr_redis_beat {
  cr_redis_t *conn;
  char *stream, *group, *consumer;
  char id[64]; /* the entry held, "" for none */
  double interval;
  int stop, fresh;
  int pid; /* the process whose thread it is: a forked copy has none */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
};

/* Resets the idle time of entry id, only while this consumer still holds
 * it: a consumer that was taken for dead never takes an entry back. */
static const char BEAT[] =
  "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1) "
  "if p[1] and p[1][2] == ARGV[2] then "
  "  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID') return 1 "
  "end "
  "return 0";

static void beat_once(cr_redis_beat_t *b, const char *id) {
  const char *argv[] = {b->stream, b->group, b->consumer, id};
  size_t lens[4];
  for (int i = 0; i < 4; i++) lens[i] = strlen(argv[i]);
  cr_redis_reply_t *r;
  if (cr_redis_eval(b->conn, BEAT, 1, 4, argv, lens, b->interval, &r) == 0) cr_redis_reply_free(r);
}

static void *beat_main(void *arg) {
  cr_redis_beat_t *b = arg;
  pthread_mutex_lock(&b->mu);
  while (!b->stop) {
    b->fresh = 0;
    if (b->id[0]) {
      char id[64];
      memcpy(id, b->id, sizeof id);
      pthread_mutex_unlock(&b->mu);
      beat_once(b, id);
      pthread_mutex_lock(&b->mu);
    }
    if (b->stop || b->fresh) continue;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double t = (double)ts.tv_nsec * 1e-9 + b->interval;
    ts.tv_sec += (time_t)t;
    ts.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
    pthread_cond_timedwait(&b->cv, &b->mu, &ts);
  }
  pthread_mutex_unlock(&b->mu);
  return NULL;
}

int cr_redis_beat_start(const cr_redis_t *c, const char *stream, const char *group, const char *consumer,
                        double interval, cr_redis_beat_t **out) {
  *out = NULL;
  cr_redis_beat_t *b = calloc(1, sizeof *b);
  if (!b) return CR_ENOMEM;
  int rc = cr__redis_clone(c, &b->conn);
  if (rc < 0) {
    free(b);
    return rc;
  }
  b->stream = strdup(stream);
  b->group = strdup(group);
  b->consumer = strdup(consumer);
  b->interval = interval > 0 ? interval : 1.0;
  b->pid = getpid();
  pthread_mutex_init(&b->mu, NULL);
  pthread_cond_init(&b->cv, NULL);
  rc = pthread_create(&b->thread, NULL, beat_main, b);
  if (rc != 0) {
    cr_redis_free(b->conn);
    free(b->stream), free(b->group), free(b->consumer);
    free(b);
    return -rc;
  }
  *out = b;
  return 0;
}

void cr_redis_beat_hold(cr_redis_beat_t *b, const char *id) {
  if (b->pid != getpid()) return;
  pthread_mutex_lock(&b->mu);
  if (id && strcmp(id, b->id) != 0) b->fresh = 1;
  snprintf(b->id, sizeof b->id, "%s", id ? id : "");
  pthread_cond_signal(&b->cv);
  pthread_mutex_unlock(&b->mu);
}

void cr_redis_beat_stop(cr_redis_beat_t *b) {
  if (!b || b->pid != getpid()) return; /* a forked copy: the thread is not here */
  pthread_mutex_lock(&b->mu);
  b->stop = 1;
  pthread_cond_signal(&b->cv);
  pthread_mutex_unlock(&b->mu);
  pthread_join(b->thread, NULL);
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->cv);
  cr_redis_free(b->conn);
  free(b->stream), free(b->group), free(b->consumer);
  free(b);
}
