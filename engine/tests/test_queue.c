/* Tests of the channel transport: queue order and sizes, bounds, timeouts,
 * close, large messages, the overflow list, many processes at once, killed
 * producers and consumers, joinable counts, SIGINT; pipes: both ways, poll,
 * end of stream by close and by death, simplex. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

static cr_arena_t *arena(void) {
  cr_arena_t *a;
  CHECK_OK(cr_arena_create(&a, (size_t)1 << 30));
  return a;
}

typedef struct {
  char buf[256];
  size_t len;
  int calls;
} sink_t;

static int to_buf(void *ud, const void *p, size_t len) {
  sink_t *s = ud;
  s->calls++;
  s->len = len;
  memcpy(s->buf, p, len < sizeof s->buf ? len : sizeof s->buf);
  return 0;
}

static int get_str(cr_arena_t *a, cr_off_t q, double t, sink_t *s) {
  memset(s, 0, sizeof *s);
  return cr_queue_get(a, q, to_buf, s, t);
}

static void put_str(cr_arena_t *a, cr_off_t q, const char *str) {
  CHECK_OK(cr_queue_put(a, q, str, strlen(str), 5));
}

/* fork() for a test child that must not outlive a failing test. */
static pid_t fork_child(void) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0);
  }
  return pid;
}

/* Waits (at most 10 s) until fn(arg) is true. */
static int wait_for(int (*fn)(void *), void *arg) {
  double end = cr_now() + 10;
  while (!fn(arg)) {
    if (cr_now() > end) return 0;
    cr_sleep(0.001);
  }
  return 1;
}

void test_queue_fifo_size(void) {
  cr_arena_t *a = arena();
  cr_off_t q;
  CHECK_OK(cr_queue_new(a, 0, 0, &q));
  sink_t s;
  CHECK_EQ(cr_queue_size(a, q), 0);
  put_str(a, q, "one");
  CHECK_EQ(cr_queue_size(a, q), 1);
  char big[200];
  memset(big, 'x', sizeof big); /* longer than a slot: goes in a block */
  CHECK_OK(cr_queue_put(a, q, big, sizeof big, 0));
  CHECK_EQ(cr_queue_size(a, q), 2);
  CHECK_OK(cr_queue_put(a, q, "", 0, 0)); /* empty messages are messages */
  CHECK_EQ(cr_queue_size(a, q), 3);
  CHECK_OK(get_str(a, q, 0, &s));
  CHECK(s.len == 3 && memcmp(s.buf, "one", 3) == 0);
  CHECK_EQ(cr_queue_size(a, q), 2);
  CHECK_OK(get_str(a, q, 0, &s));
  CHECK(s.len == sizeof big && memcmp(s.buf, big, sizeof big) == 0);
  CHECK_OK(get_str(a, q, 0, &s));
  CHECK(s.calls == 1 && s.len == 0);
  CHECK_EQ(cr_queue_size(a, q), 0);
  CHECK_EQ(get_str(a, q, 0, &s), CR_EEMPTY);
  CHECK_EQ(get_str(a, q, 0.02, &s), CR_EEMPTY);
  CHECK_EQ(s.calls, 0);
  /* Order over many laps of a small ring. */
  cr_off_t q2;
  CHECK_OK(cr_queue_new(a, 3, 0, &q2));
  for (int i = 0; i < 1000; i++) {
    char m[16];
    snprintf(m, sizeof m, "%d", i);
    put_str(a, q2, m);
    if (i % 2) {
      CHECK_OK(get_str(a, q2, 0, &s));
      CHECK_EQ(atoi(s.buf), i - 1);
      CHECK_OK(get_str(a, q2, 0, &s));
      CHECK_EQ(atoi(s.buf), i);
    }
  }
  CHECK_EQ(cr_queue_release(a, q2), 1);
  CHECK_EQ(cr_queue_release(a, q), 1);
  cr_arena_stats_t st;
  cr_arena_stats(a, &st);
  CHECK_EQ(st.blocks, 0); /* every block and cached block freed */
  cr_arena_close(a);
}

void test_queue_bounded_close(void) {
  cr_arena_t *a = arena();
  cr_off_t q;
  CHECK_EQ(cr_queue_new(a, -1, 0, &q), CR_EINVAL);
  CHECK_OK(cr_queue_new(a, 2, 0, &q));
  CHECK_EQ(cr_queue_maxsize(a, q), 2);
  put_str(a, q, "a");
  put_str(a, q, "b");
  CHECK_EQ(cr_queue_put(a, q, "c", 1, 0), CR_EFULL);
  CHECK_EQ(cr_queue_put(a, q, "c", 1, 0.02), CR_EFULL);
  CHECK_EQ(cr_queue_size(a, q), 2);
  cr_queue_close(a, q);
  cr_queue_close(a, q); /* idempotent */
  CHECK(cr_queue_is_closed(a, q));
  CHECK_EQ(cr_queue_put(a, q, "c", 1, 0), CR_ECLOSED);
  sink_t s;
  CHECK_OK(get_str(a, q, 0, &s));
  CHECK(s.buf[0] == 'a');
  CHECK_OK(get_str(a, q, -1, &s));
  CHECK(s.buf[0] == 'b');
  CHECK_EQ(get_str(a, q, -1, &s), CR_ECLOSED); /* drained: no wait */
  CHECK_EQ(get_str(a, q, 0, &s), CR_ECLOSED);
  cr_queue_release(a, q);
  cr_arena_close(a);
}

typedef struct {
  const unsigned char *want;
  size_t len;
  int ok;
} big_sink_t;

static int check_big(void *ud, const void *p, size_t len) {
  big_sink_t *b = ud;
  b->ok = len == b->len && memcmp(p, b->want, len) == 0;
  return 0;
}

void test_queue_large_message(void) {
  cr_arena_t *a = arena();
  cr_off_t q;
  CHECK_OK(cr_queue_new(a, 1, 0, &q));
  size_t n = (size_t)64 << 20;
  unsigned char *m = malloc(n);
  CHECK(m);
  for (size_t i = 0; i < n; i++) m[i] = (unsigned char)(i * 2654435761u >> 13);
  for (int round = 0; round < 2; round++) {
    CHECK_OK(cr_queue_put(a, q, m, n, 0));
    big_sink_t b = {m, n, 0};
    CHECK_OK(cr_queue_get(a, q, check_big, &b, 0));
    CHECK(b.ok);
  }
  free(m);
  cr_queue_release(a, q);
  cr_arena_stats_t st;
  cr_arena_stats(a, &st);
  CHECK_EQ(st.blocks, 0);
  cr_arena_close(a);
}

void test_queue_overflow_order(void) {
  cr_arena_t *a = arena();
  cr_off_t q;
  CHECK_OK(cr_queue_new(a, 0, CR_QUEUE_JOINABLE, &q));
  int n = CR_QUEUE_UNBOUNDED_SLOTS * 2 + 7;
  sink_t s;
  for (int i = 0; i < n; i++) {
    char m[16];
    snprintf(m, sizeof m, "%d", i);
    CHECK_OK(cr_queue_put(a, q, m, strlen(m), 0)); /* never full */
    CHECK_EQ(cr_queue_size(a, q), i + 1);
  }
  CHECK_EQ(cr_queue_unfinished(a, q), n);
  for (int i = 0; i < n; i++) {
    if (i == 100) put_str(a, q, "last"); /* queues behind the overflow */
    CHECK_OK(get_str(a, q, 0, &s));
    CHECK_EQ(atoi(s.buf), i);
    CHECK_OK(cr_queue_task_done(a, q));
  }
  CHECK_OK(get_str(a, q, 0, &s));
  CHECK(strcmp(s.buf, "last") == 0);
  CHECK_EQ(cr_queue_size(a, q), 0);
  cr_queue_release(a, q);
  cr_arena_close(a);
}

/* ---- many processes ------------------------------------------------------------ */

typedef struct {
  _Atomic int64_t sum;
  _Atomic int64_t count;
} totals_t;

static int add_item(void *ud, const void *p, size_t len) {
  totals_t *t = ud;
  int64_t v;
  if (len < sizeof v) return -1;
  memcpy(&v, p, sizeof v);
  if (v < 0) return 1; /* the stop marker */
  atomic_fetch_add(&t->sum, v);
  atomic_fetch_add(&t->count, 1);
  return 0;
}

static int stop_seen;
static int add_or_stop(void *ud, const void *p, size_t len) {
  int64_t v;
  memcpy(&v, p, sizeof v);
  if (len >= sizeof v && v < 0) {
    stop_seen = 1;
    return 0;
  }
  return add_item(ud, p, len);
}

static void mpmc(int64_t maxsize, int producers, int consumers, int64_t per, size_t pad) {
  cr_arena_t *a = arena();
  cr_off_t q, tot;
  CHECK_OK(cr_queue_new(a, maxsize, 0, &q));
  CHECK_OK(cr_arena_alloc(a, sizeof(totals_t), &tot));
  totals_t *t = cr_arena_ptr(a, tot);
  pid_t pids[16];
  int np = 0;
  for (int c = 0; c < consumers; c++) {
    pid_t pid = fork_child();
    if (pid == 0) {
      stop_seen = 0;
      while (!stop_seen)
        if (cr_queue_get(a, q, add_or_stop, t, 20) < 0) _exit(3);
      _exit(0);
    }
    pids[np++] = pid;
  }
  for (int p = 0; p < producers; p++) {
    pid_t pid = fork_child();
    if (pid == 0) {
      unsigned char m[256] = {0};
      for (int64_t i = 1; i <= per; i++) {
        int64_t v = p * per + i;
        memcpy(m, &v, sizeof v);
        if (cr_queue_put(a, q, m, sizeof v + (i % 3 == 0 ? pad : 0), 20) < 0) _exit(3);
      }
      _exit(0);
    }
    pids[np++] = pid;
  }
  for (int i = consumers; i < np; i++) {
    int st;
    waitpid(pids[i], &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  for (int c = 0; c < consumers; c++) {
    int64_t stop = -1;
    CHECK_OK(cr_queue_put(a, q, &stop, sizeof stop, 20));
  }
  for (int i = 0; i < consumers; i++) {
    int st;
    waitpid(pids[i], &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  int64_t n = producers * per;
  CHECK_EQ(atomic_load(&t->count), n);
  CHECK_EQ(atomic_load(&t->sum), n * (n + 1) / 2);
  CHECK_EQ(cr_queue_size(a, q), 0);
  cr_queue_release(a, q);
  cr_arena_close(a);
}

void test_queue_many_processes(void) {
  mpmc(0, 2, 2, 20000, 100); /* unbounded; every third message in a block */
  mpmc(4, 3, 2, 5000, 0);    /* small bound: producers block */
}

/* A producer blocked on a full queue goes on when a reader makes room. */
void test_queue_put_blocks_for_room(void) {
  cr_arena_t *a = arena();
  cr_off_t q;
  CHECK_OK(cr_queue_new(a, 1, 0, &q));
  pid_t pid = fork_child();
  if (pid == 0) {
    for (int i = 0; i < 5; i++) {
      char m[8];
      snprintf(m, sizeof m, "%d", i);
      if (cr_queue_put(a, q, m, strlen(m), 20) < 0) _exit(3);
    }
    _exit(0);
  }
  sink_t s;
  for (int i = 0; i < 5; i++) {
    CHECK_OK(get_str(a, q, 20, &s));
    CHECK_EQ(atoi(s.buf), i);
    CHECK(cr_queue_size(a, q) <= 1);
  }
  int st;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  cr_queue_release(a, q);
  cr_arena_close(a);
}

/* ---- killed processes -------------------------------------------------------------- */

typedef struct {
  cr_arena_t *a;
  cr_off_t q;
  uint32_t was; /* the queue's parked count before this child */
} parked_t;

static int is_parked(void *arg) {
  parked_t *p = arg;
  return cr_queue_test_parked(p->a, p->q) > p->was;
}

static void reap_zombie(pid_t pid) {
  int st;
  waitpid(pid, &st, 0);
  CHECK(WIFSIGNALED(st));
}

/* Forks a child whose next put (CR_QUEUE_PARK_PUT) or get
 * (CR_QUEUE_PARK_GET) on q stops for ever in its middle, and kills it
 * there. reap 0: waits until it has ended but leaves it a zombie, reaped by
 * nobody (reap_zombie does, after the test). Returns its pid. */
static pid_t kill_in(cr_arena_t *a, cr_off_t q, int where, int reap) {
  parked_t p = {a, q, cr_queue_test_parked(a, q)};
  pid_t pid = fork_child();
  if (pid == 0) {
    cr_queue_test_park(where);
    char big[1000]; /* a put that takes a block (TAKE) */
    memset(big, 't', sizeof big);
    if (where == CR_QUEUE_PARK_PUT) cr_queue_put(a, q, "torn message", 12, 5);
    else if (where == CR_QUEUE_PARK_TAKE) cr_queue_put(a, q, big, sizeof big, 5);
    else cr_queue_get(a, q, NULL, NULL, 5);
    _exit(0);
  }
  CHECK(wait_for(is_parked, &p));
  kill(pid, SIGKILL);
  siginfo_t si;
  if (reap) reap_zombie(pid);
  else CHECK_OK(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT));
  return pid;
}

void test_queue_killed_producer(void) {
  cr_arena_t *a = arena();
  for (int joinable = 0; joinable < 2; joinable++) {
    cr_off_t q;
    CHECK_OK(cr_queue_new(a, 2, joinable ? CR_QUEUE_JOINABLE : 0, &q));
    put_str(a, q, "before");
    kill_in(a, q, CR_QUEUE_PARK_PUT, 1);
    sink_t s;
    CHECK_OK(get_str(a, q, 5, &s));
    CHECK(strcmp(s.buf, "before") == 0);
    if (joinable) CHECK_OK(cr_queue_task_done(a, q));
    /* The dead producer's slot is skipped, the ring goes on for laps. */
    for (int i = 0; i < 10; i++) {
      put_str(a, q, "after");
      CHECK_OK(get_str(a, q, 5, &s));
      CHECK(s.len == 5 && strcmp(s.buf, "after") == 0);
      if (joinable) CHECK_OK(cr_queue_task_done(a, q));
    }
    CHECK_EQ(cr_queue_size(a, q), 0);
    CHECK_EQ(get_str(a, q, 0, &s), CR_EEMPTY);
    if (joinable) CHECK_OK(cr_queue_join(a, q, 5)); /* the torn put is not owed */
    cr_queue_release(a, q);
  }
  cr_arena_close(a);
}

void test_queue_killed_consumer(void) {
  cr_arena_t *a = arena();
  cr_off_t q;
  CHECK_OK(cr_queue_new(a, 1, 0, &q));
  char big[1000];
  memset(big, 'b', sizeof big);
  CHECK_OK(cr_queue_put(a, q, big, sizeof big, 0));
  kill_in(a, q, CR_QUEUE_PARK_GET, 1);
  /* The message the dead reader held is delivered to the next one, and
   * the full ring opens again. */
  sink_t s;
  CHECK_OK(get_str(a, q, 10, &s));
  CHECK(s.len == sizeof big && memcmp(s.buf, big, 200) == 0);
  put_str(a, q, "next");
  CHECK_OK(get_str(a, q, 5, &s));
  CHECK(strcmp(s.buf, "next") == 0);
  cr_queue_release(a, q);
  cr_arena_close(a);
}

/* A producer killed in a put, no reader: put and size free its slot. */
void test_queue_killed_producer_no_reader(void) {
  cr_arena_t *a = arena();
  for (int maxsize = 1; maxsize <= 3; maxsize += 2) {
    cr_off_t q;
    CHECK_OK(cr_queue_new(a, maxsize, CR_QUEUE_JOINABLE, &q));
    pid_t pid = kill_in(a, q, CR_QUEUE_PARK_PUT, 0);
    if (maxsize == 1) CHECK_EQ(cr_queue_size(a, q), 0);
    for (int i = 0; i < maxsize; i++) CHECK_OK(cr_queue_put(a, q, "whole", 5, 0));
    CHECK_EQ(cr_queue_put(a, q, "one too many", 12, 0), CR_EFULL);
    CHECK_EQ(cr_queue_size(a, q), maxsize);
    CHECK_EQ(cr_queue_unfinished(a, q), maxsize);
    sink_t s;
    for (int i = 0; i < maxsize; i++) {
      CHECK_OK(get_str(a, q, 0, &s));
      CHECK(s.len == 5 && memcmp(s.buf, "whole", 5) == 0);
    }
    CHECK_EQ(get_str(a, q, 0, &s), CR_EEMPTY);
    reap_zombie(pid);
    cr_queue_release(a, q);
  }
  cr_arena_close(a);
}

/* A consumer killed in a get: once its reaper reports it, its message
 * comes first; before, a get that waits a slice finds it. */
void test_queue_killed_consumer_order(void) {
  cr_arena_t *a = arena();
  cr_off_t q;
  CHECK_OK(cr_queue_new(a, 0, 0, &q));
  char big[300];
  memset(big, '1', sizeof big); /* in a block of its own */
  CHECK_OK(cr_queue_put(a, q, big, sizeof big, 0));
  put_str(a, q, "2");
  put_str(a, q, "3");
  pid_t pid = kill_in(a, q, CR_QUEUE_PARK_GET, 1);
  cr_queue_forget(a, q, pid); /* as its reaper does */
  CHECK_EQ(cr_queue_size(a, q), 3);
  put_str(a, q, "4");
  sink_t s;
  CHECK_OK(get_str(a, q, 0, &s));
  CHECK(s.len == sizeof big && memcmp(s.buf, big, 200) == 0);
  for (char c = '2'; c <= '4'; c++) {
    CHECK_OK(get_str(a, q, 0, &s));
    CHECK(s.len == 1 && s.buf[0] == c);
  }
  CHECK_EQ(cr_queue_size(a, q), 0);
  CHECK_EQ(get_str(a, q, 0, &s), CR_EEMPTY);
  /* Nobody reaps it: a get that finds the queue empty for a wait slice
   * takes the message over all the same. */
  put_str(a, q, "5");
  pid = kill_in(a, q, CR_QUEUE_PARK_GET, 0);
  CHECK_EQ(get_str(a, q, 0, &s), CR_EEMPTY); /* not known yet */
  CHECK_OK(get_str(a, q, 5, &s));
  CHECK(s.len == 1 && s.buf[0] == '5');
  reap_zombie(pid);
  cr_queue_release(a, q);
  cr_arena_close(a);
}

/* The arena's blocks and bytes in use, to compare before and after. */
static cr_arena_stats_t used(cr_arena_t *a) {
  cr_arena_stats_t st;
  cr_arena_stats(a, &st);
  return st;
}

/* Fills the ring of an unbounded queue with short messages, so that what
 * is put next goes to the overflow list. */
static void fill_ring(cr_arena_t *a, cr_off_t q) {
  for (int i = 0; i < CR_QUEUE_UNBOUNDED_SLOTS; i++) CHECK_OK(cr_queue_put(a, q, "r", 1, 0));
}

static void drain_ring(cr_arena_t *a, cr_off_t q) {
  sink_t s;
  for (int i = 0; i < CR_QUEUE_UNBOUNDED_SLOTS; i++) {
    CHECK_OK(get_str(a, q, 0, &s));
    CHECK(s.len == 1 && s.buf[0] == 'r');
  }
}

/* Processes killed while they move a message block (between a queue slot
 * or the overflow list and the queue's block cache or the arena) leave it
 * where the queue's recovery finds it: the queue goes on working, each
 * message is delivered once, and once the queue is freed the arena holds
 * no block more than before. Each case kills one process at one step:
 * a reader giving back its delivered message's block, from a ring slot
 * and from the overflow list (GIVE), a reader putting it into the cache
 * (RETURN), a producer taking one from the cache for a ring slot and for
 * the overflow list (TAKE). */
void test_queue_killed_moving_a_block(void) {
  cr_arena_t *a = arena();
  char big[1000];
  memset(big, 'b', sizeof big);
  sink_t s;
  for (int c = 0; c < 5; c++) {
    int where = (int[]){CR_QUEUE_PARK_GIVE, CR_QUEUE_PARK_GIVE, CR_QUEUE_PARK_RETURN, CR_QUEUE_PARK_TAKE,
                        CR_QUEUE_PARK_TAKE}[c];
    int overflow = c == 1 || c == 4;
    cr_arena_stats_t before = used(a);
    cr_off_t q;
    CHECK_OK(cr_queue_new(a, overflow ? 0 : 2, 0, &q));
    /* a block in the cache, for the producer to take */
    CHECK_OK(cr_queue_put(a, q, big, sizeof big, 0));
    CHECK_OK(get_str(a, q, 0, &s));
    if (overflow) fill_ring(a, q);
    if (where == CR_QUEUE_PARK_TAKE) {
      kill_in(a, q, where, 1);
      if (overflow) drain_ring(a, q);
    } else {
      CHECK_OK(cr_queue_put(a, q, big, sizeof big, 0));
      if (overflow) drain_ring(a, q);
      pid_t pid = kill_in(a, q, where, 1);
      cr_queue_forget(a, q, pid); /* as its reaper does */
    }
    /* the killed reader's message was delivered; the killed put never was */
    CHECK_EQ(cr_queue_size(a, q), 0);
    CHECK_EQ(get_str(a, q, 0, &s), CR_EEMPTY);
    for (int i = 0; i < 3; i++) {
      CHECK_OK(cr_queue_put(a, q, big, sizeof big, 0));
      CHECK_OK(get_str(a, q, 0, &s));
      CHECK(s.len == sizeof big && s.buf[0] == 'b');
    }
    CHECK_EQ(get_str(a, q, 0, &s), CR_EEMPTY);
    cr_queue_release(a, q);
    cr_arena_stats_t after = used(a);
    if (after.blocks != before.blocks) fprintf(stderr, "case %d (park point %d): a block left\n", c, where);
    CHECK_EQ(after.blocks, before.blocks);
    CHECK_EQ(after.in_use, before.in_use);
  }
  cr_arena_close(a);
}

/* ---- joinable, SIGINT ----------------------------------------------------------------- */

void test_queue_joinable(void) {
  cr_arena_t *a = arena();
  cr_off_t q, plain;
  CHECK_OK(cr_queue_new(a, 0, CR_QUEUE_JOINABLE, &q));
  CHECK_OK(cr_queue_new(a, 0, 0, &plain));
  CHECK_EQ(cr_queue_task_done(a, plain), CR_EINVAL);
  CHECK_OK(cr_queue_join(a, q, 0));
  CHECK_EQ(cr_queue_task_done(a, q), CR_ETOOMANY);
  put_str(a, q, "1");
  put_str(a, q, "2");
  CHECK_EQ(cr_queue_join(a, q, 0), CR_ETIMEDOUT);
  CHECK_EQ(cr_queue_join(a, q, 0.02), CR_ETIMEDOUT);
  pid_t pid = fork_child();
  if (pid == 0) {
    for (int i = 0; i < 2; i++) {
      if (cr_queue_get(a, q, NULL, NULL, 5) < 0) _exit(3);
      if (cr_queue_task_done(a, q) < 0) _exit(4);
    }
    _exit(0);
  }
  CHECK_OK(cr_queue_join(a, q, 10));
  CHECK_EQ(cr_queue_unfinished(a, q), 0);
  CHECK_EQ(cr_queue_task_done(a, q), CR_ETOOMANY);
  CHECK_EQ(cr_queue_unfinished(a, q), 0);
  int st;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  cr_queue_release(a, q);
  cr_queue_release(a, plain);
  cr_arena_close(a);
}

static void on_sigint(int sig) { (void)sig; }

void test_queue_sigint(void) {
  cr_arena_t *a = arena();
  cr_off_t q;
  CHECK_OK(cr_queue_new(a, 1, 0, &q));
  signal(SIGINT, on_sigint); /* a SIGINT before the wait starts is harmless */
  pid_t parent = getpid();
  pid_t pid = fork_child();
  if (pid == 0) {
    for (;;) {
      cr_sleep(0.02);
      kill(parent, SIGINT);
    }
  }
  sink_t s;
  CHECK_EQ(get_str(a, q, 20, &s), CR_EINTR);
  cr_intr_clear();
  put_str(a, q, "x");
  CHECK_EQ(cr_queue_put(a, q, "y", 1, 20), CR_EINTR);
  cr_intr_clear();
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  CHECK_EQ(cr_queue_size(a, q), 1); /* nothing half done */
  CHECK_OK(get_str(a, q, 0, &s));
  CHECK(s.buf[0] == 'x');
  cr_queue_release(a, q);
  cr_arena_close(a);
}

/* ---- pipes ------------------------------------------------------------------------------ */

void test_pipe_duplex_poll(void) {
  cr_arena_t *a = arena();
  cr_off_t e[2];
  CHECK_OK(cr_pipe_new(a, 1, e));
  int me = getpid();
  cr_pipe_hold(a, e[0], me);
  cr_pipe_hold(a, e[1], me);
  CHECK(cr_pipe_readable(a, e[0]) && cr_pipe_writable(a, e[0]));
  CHECK_EQ(cr_pipe_poll(a, e[1], 0), CR_EEMPTY);
  CHECK_EQ(cr_pipe_poll(a, e[1], 0.02), CR_EEMPTY);
  CHECK_OK(cr_pipe_send(a, e[0], "ping", 4));
  CHECK_OK(cr_pipe_poll(a, e[1], 0));
  CHECK_OK(cr_pipe_poll(a, e[1], 0)); /* poll takes nothing */
  sink_t s = {0};
  CHECK_OK(cr_pipe_recv(a, e[1], to_buf, &s, 5));
  CHECK(s.len == 4 && memcmp(s.buf, "ping", 4) == 0);
  CHECK_OK(cr_pipe_send(a, e[1], "pong", 4));
  CHECK_OK(cr_pipe_recv(a, e[0], to_buf, &s, 5));
  CHECK(memcmp(s.buf, "pong", 4) == 0);
  CHECK_EQ(cr_pipe_recv(a, e[0], to_buf, &s, 0), CR_EEMPTY);
  /* Close one end: the other drains, then sees the end of stream. */
  CHECK_OK(cr_pipe_send(a, e[1], "last", 4));
  cr_pipe_unhold(a, e[1], me);
  CHECK_EQ(cr_pipe_release(a, e[1]), 1); /* its object goes; the core lives with e[0] */
  CHECK_EQ(cr_pipe_send(a, e[0], "x", 1), CR_ECLOSED);
  CHECK_OK(cr_pipe_recv(a, e[0], to_buf, &s, 5));
  CHECK(memcmp(s.buf, "last", 4) == 0);
  CHECK_EQ(cr_pipe_recv(a, e[0], to_buf, &s, -1), CR_ECLOSED);
  CHECK_OK(cr_pipe_poll(a, e[0], -1)); /* end of stream: recv would not block */
  cr_pipe_unhold(a, e[0], me);
  CHECK_EQ(cr_pipe_release(a, e[0]), 1);
  cr_arena_stats_t st;
  cr_arena_stats(a, &st);
  CHECK_EQ(st.blocks, 0);
  cr_arena_close(a);
}

/* A reference without a registered handle (a handle inside a message)
 * keeps the end open: no end of stream while it travels. */
void test_pipe_in_flight(void) {
  cr_arena_t *a = arena();
  cr_off_t e[2];
  CHECK_OK(cr_pipe_new(a, 1, e));
  int me = getpid();
  cr_pipe_hold(a, e[0], me);
  cr_pipe_hold(a, e[1], me);
  cr_obj_retain(a, e[1]); /* a message now names e[1] */
  cr_pipe_unhold(a, e[1], me);
  cr_pipe_release(a, e[1]); /* the sender closed its handle */
  CHECK_EQ(cr_pipe_recv(a, e[0], NULL, NULL, 0.02), CR_EEMPTY);
  CHECK_OK(cr_pipe_send(a, e[0], "to the traveller", 16));
  cr_pipe_hold(a, e[1], me); /* decoded: the message's reference is adopted */
  CHECK_EQ(cr_pipe_held_by(a, e[1], me), 1);
  CHECK_OK(cr_pipe_recv(a, e[1], NULL, NULL, 0));
  cr_pipe_unhold(a, e[1], me);
  cr_pipe_release(a, e[1]);
  CHECK_EQ(cr_pipe_recv(a, e[0], NULL, NULL, 5), CR_ECLOSED);
  cr_pipe_unhold(a, e[0], me);
  CHECK_EQ(cr_pipe_release(a, e[0]), 1);
  cr_arena_stats_t st;
  cr_arena_stats(a, &st);
  CHECK_EQ(st.blocks, 0);
  cr_arena_close(a);
}

void test_pipe_simplex(void) {
  cr_arena_t *a = arena();
  cr_off_t e[2];
  CHECK_OK(cr_pipe_new(a, 0, e));
  cr_pipe_hold(a, e[0], getpid());
  cr_pipe_hold(a, e[1], getpid());
  CHECK(cr_pipe_readable(a, e[0]) && !cr_pipe_writable(a, e[0]));
  CHECK(!cr_pipe_readable(a, e[1]) && cr_pipe_writable(a, e[1]));
  CHECK_EQ(cr_pipe_send(a, e[0], "x", 1), CR_ESTATE);
  CHECK_EQ(cr_pipe_recv(a, e[1], NULL, NULL, 0), CR_ESTATE);
  CHECK_EQ(cr_pipe_poll(a, e[1], 0), CR_ESTATE);
  CHECK_OK(cr_pipe_send(a, e[1], "x", 1));
  CHECK_OK(cr_pipe_recv(a, e[0], NULL, NULL, 0));
  cr_pipe_release(a, e[0]);
  cr_pipe_release(a, e[1]);
  cr_arena_close(a);
}

/* The far end is held only by a process that dies (it is not even reaped
 * yet when the reader looks: a zombie counts as gone). */
void test_pipe_far_process_dies(void) {
  cr_arena_t *a = arena();
  cr_off_t e[2];
  CHECK_OK(cr_pipe_new(a, 1, e));
  cr_pipe_hold(a, e[0], getpid());
  cr_pipe_hold(a, e[1], getpid()); /* as the bindings do: held before a fork */
  pid_t pid = fork_child();
  if (pid == 0) {
    cr_pipe_hold(a, e[1], getpid());
    cr_pipe_send(a, e[1], "hello", 5);
    for (;;) pause();
  }
  sink_t s = {0};
  CHECK_OK(cr_pipe_recv(a, e[0], to_buf, &s, 10));
  CHECK(memcmp(s.buf, "hello", 5) == 0);
  cr_pipe_unhold(a, e[1], getpid()); /* now only the child holds it */
  CHECK_EQ(cr_pipe_recv(a, e[0], to_buf, &s, 0.05), CR_EEMPTY); /* alive: no end yet */
  kill(pid, SIGKILL);
  CHECK_EQ(cr_pipe_recv(a, e[0], to_buf, &s, 10), CR_ECLOSED);
  waitpid(pid, NULL, 0);
  /* A new holder takes the dead process's entry over. */
  cr_pipe_hold(a, e[1], getpid());
  CHECK_OK(cr_pipe_send(a, e[1], "again", 5));
  CHECK_OK(cr_pipe_recv(a, e[0], to_buf, &s, 0));
  cr_pipe_release(a, e[0]);
  cr_pipe_release(a, e[1]);
  cr_arena_close(a);
}

/* The only reader is killed and nobody reaps it: sends stop soon. */
void test_pipe_writer_sees_dead_reader(void) {
  cr_arena_t *a = arena();
  cr_off_t e[2];
  CHECK_OK(cr_pipe_new(a, 1, e));
  cr_pipe_hold(a, e[1], getpid());
  pid_t pid = fork_child(); /* the reference on e[0] is the child's */
  if (pid == 0) {
    cr_pipe_hold(a, e[0], getpid());
    cr_pipe_send(a, e[0], "ready", 5);
    for (;;) pause();
  }
  sink_t s = {0};
  CHECK_OK(cr_pipe_recv(a, e[1], to_buf, &s, 10));
  char msg[1024];
  memset(msg, 'm', sizeof msg);
  CHECK_OK(cr_pipe_send(a, e[1], msg, sizeof msg)); /* alive: it goes */
  kill(pid, SIGKILL);
  siginfo_t si;
  CHECK_OK(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT)); /* a zombie, its holds not forgotten */
  int n = 0, rc;
  while ((rc = cr_pipe_send(a, e[1], msg, sizeof msg)) == 0 && n < 100000) n++;
  CHECK_EQ(rc, CR_ECLOSED);
  CHECK(n < 2000);
  CHECK_EQ(cr_pipe_send(a, e[1], "x", 1), CR_ECLOSED); /* and it stays closed */
  waitpid(pid, NULL, 0);
  cr_pipe_forget(a, e[0], pid, 1); /* as its reaper does, with the reference it held */
  cr_pipe_release(a, e[0]);
  CHECK_EQ(cr_pipe_send(a, e[1], "x", 1), CR_ECLOSED);
  cr_pipe_release(a, e[1]);
  cr_arena_close(a);
}
