/* Tests of the synchronisation primitives: each alone, across forked
 * processes, with a holder killed, and with SIGINT during a wait. Children
 * report through _exit codes; nothing sleeps to let things happen: every
 * hand-over waits on an Event with a timeout. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

static cr_arena_t *arena(void) {
  cr_arena_t *a;
  CHECK_OK(cr_arena_create(&a, 1 << 22));
  return a;
}

static cr_off_t event(cr_arena_t *a) {
  cr_off_t off;
  CHECK_OK(cr_event_new(a, &off));
  return off;
}

/* Exit status of a child: its code, or 100 + signal. */
static int reap(pid_t pid) {
  int st;
  CHECK(waitpid(pid, &st, 0) == pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

void test_sync_lock_basic(void) {
  cr_arena_t *a = arena();
  cr_off_t l;
  CHECK_OK(cr_lock_new(a, &l));
  CHECK_EQ(cr_lock_release(a, l), CR_ETOOMANY);
  CHECK_EQ(cr_lock_acquire(a, l, -1), 0);
  CHECK(cr_lock_locked(a, l));
  CHECK_EQ(cr_lock_acquire(a, l, 0), CR_ETIMEDOUT);
  double t0 = cr_now();
  CHECK_EQ(cr_lock_acquire(a, l, 0.05), CR_ETIMEDOUT);
  CHECK(cr_now() - t0 >= 0.05);
  CHECK_OK(cr_lock_release(a, l));
  CHECK(!cr_lock_locked(a, l));
  cr_obj_release(a, l, cr_sync_destroy);
  cr_arena_close(a);
}

void test_sync_lock_cross_process(void) {
  cr_arena_t *a = arena();
  cr_off_t l, held = event(a), done = event(a);
  CHECK_OK(cr_lock_new(a, &l));
  pid_t pid = fork();
  if (pid == 0) {
    if (cr_lock_acquire(a, l, 5) != 0) _exit(1);
    cr_event_set(a, held);
    if (cr_event_wait(a, done, 10) != 0) _exit(2);
    _exit(cr_lock_release(a, l) == 0 ? 0 : 3);
  }
  CHECK_OK(cr_event_wait(a, held, 10));
  CHECK_EQ(cr_lock_acquire(a, l, 0.05), CR_ETIMEDOUT);
  CHECK_EQ(cr_lock_release(a, l), CR_ENOTOWNER);
  cr_event_set(a, done);
  CHECK_EQ(cr_lock_acquire(a, l, 10), 0); /* woken by the child's release */
  CHECK_EQ(reap(pid), 0);
  CHECK_OK(cr_lock_release(a, l));
  cr_arena_close(a);
}

/* Two processes hammer one lock around a non-atomic counter. */
void test_sync_lock_contended(void) {
  cr_arena_t *a = arena();
  cr_off_t l, v;
  CHECK_OK(cr_lock_new(a, &l));
  CHECK_OK(cr_shm_new(a, CR_OBJ_VALUE, 'q', 1, 0, &v));
  volatile int64_t *n = cr_shm_data(a, v);
  pid_t pids[2];
  for (int k = 0; k < 2; k++) {
    pids[k] = fork();
    if (pids[k] == 0) {
      for (int i = 0; i < 50000; i++) {
        if (cr_lock_acquire(a, l, 10) != 0) _exit(1);
        *n = *n + 1;
        cr_lock_release(a, l);
      }
      _exit(0);
    }
  }
  for (int k = 0; k < 2; k++) CHECK_EQ(reap(pids[k]), 0);
  CHECK_EQ(*n, 100000);
  cr_arena_close(a);
}

/* The holder dies: the waiter already asleep is woken with CR_EOWNERDEAD
 * holding the lock, and the lock works normally afterwards. */
void test_sync_lock_owner_dies(void) {
  cr_arena_t *a = arena();
  cr_off_t l, held = event(a), never = event(a);
  CHECK_OK(cr_lock_new(a, &l));
  pid_t pid = fork();
  if (pid == 0) {
    cr_lock_acquire(a, l, 5);
    cr_event_set(a, held);
    cr_event_wait(a, never, 0.1); /* long enough for the parent to sleep */
    raise(SIGKILL);
  }
  CHECK_OK(cr_event_wait(a, held, 10));
  CHECK_EQ(cr_lock_acquire(a, l, 10), CR_EOWNERDEAD);
  CHECK(cr_lock_locked(a, l));
  CHECK_OK(cr_lock_release(a, l));
  CHECK_EQ(reap(pid), 100 + SIGKILL);
  CHECK_EQ(cr_lock_acquire(a, l, 0), 0);
  CHECK_OK(cr_lock_release(a, l));
  cr_arena_close(a);
}

void test_sync_rlock(void) {
  cr_arena_t *a = arena();
  cr_off_t r, held = event(a), done = event(a);
  CHECK_OK(cr_rlock_new(a, &r));
  CHECK_EQ(cr_rlock_release(a, r), CR_ETOOMANY);
  CHECK_EQ(cr_rlock_locked(a, r), 0);
  CHECK_OK(cr_rlock_acquire(a, r, -1));
  CHECK_OK(cr_rlock_acquire(a, r, 0));
  CHECK_EQ(cr_rlock_depth(a, r), 2);
  CHECK_EQ(cr_rlock_locked(a, r), 1);
  CHECK_OK(cr_rlock_release(a, r));
  CHECK_OK(cr_rlock_release(a, r));
  CHECK_EQ(cr_rlock_release(a, r), CR_ETOOMANY);
  pid_t pid = fork();
  if (pid == 0) {
    cr_rlock_acquire(a, r, 5);
    cr_rlock_acquire(a, r, 5);
    cr_event_set(a, held);
    cr_event_wait(a, done, 10);
    raise(SIGKILL); /* dies at depth 2 */
  }
  CHECK_OK(cr_event_wait(a, held, 10));
  CHECK_EQ(cr_rlock_release(a, r), CR_ENOTOWNER);
  CHECK_EQ(cr_rlock_acquire(a, r, 0), CR_ETIMEDOUT);
  cr_event_set(a, done);
  CHECK_EQ(cr_rlock_acquire(a, r, 10), CR_EOWNERDEAD);
  CHECK_EQ(cr_rlock_depth(a, r), 1);
  CHECK_OK(cr_rlock_release(a, r));
  CHECK_EQ(cr_rlock_depth(a, r), 0);
  CHECK_EQ(reap(pid), 100 + SIGKILL);
  cr_arena_close(a);
}

void test_sync_sem_basic(void) {
  cr_arena_t *a = arena();
  cr_off_t s, b;
  CHECK_EQ(cr_sem_new(a, -1, 0, &s), CR_EINVAL);
  CHECK_OK(cr_sem_new(a, 2, 0, &s));
  CHECK_OK(cr_sem_acquire(a, s, 0));
  CHECK_OK(cr_sem_acquire(a, s, -1));
  CHECK_EQ(cr_sem_acquire(a, s, 0), CR_ETIMEDOUT);
  CHECK_EQ(cr_sem_acquire(a, s, 0.03), CR_ETIMEDOUT);
  CHECK_OK(cr_sem_release(a, s));
  CHECK_OK(cr_sem_release(a, s));
  CHECK_OK(cr_sem_release(a, s)); /* unbounded: may grow */
  CHECK_EQ(cr_sem_value(a, s), 3);
  CHECK_OK(cr_sem_new(a, 1, 1, &b));
  CHECK_EQ(cr_sem_release(a, b), CR_EOVERFLOW);
  CHECK_OK(cr_sem_acquire(a, b, 0));
  CHECK_OK(cr_sem_release(a, b));
  CHECK_EQ(cr_sem_release(a, b), CR_EOVERFLOW);
  CHECK_EQ(cr_sem_value(a, b), 1);
  cr_arena_close(a);
}

/* Semaphore(2) bounds 4 processes to 2 inside at once. */
void test_sync_sem_bounds(void) {
  cr_arena_t *a = arena();
  cr_off_t s, inside, peak;
  CHECK_OK(cr_sem_new(a, 2, 1, &s));
  CHECK_OK(cr_shm_new(a, CR_OBJ_VALUE, 'i', 1, 0, &inside));
  CHECK_OK(cr_shm_new(a, CR_OBJ_VALUE, 'i', 1, 0, &peak));
  pid_t pids[4];
  for (int k = 0; k < 4; k++) {
    pids[k] = fork();
    if (pids[k] == 0) {
      for (int i = 0; i < 2000; i++) {
        if (cr_sem_acquire(a, s, 10) != 0) _exit(1);
        int64_t now, p;
        cr_shm_add(a, inside, 0, 1, &now);
        do cr_shm_get_int(a, peak, 0, &p);
        while (now > p && cr_shm_cas(a, peak, 0, p, now) != 1);
        cr_shm_add(a, inside, 0, -1, &now);
        if (cr_sem_release(a, s) != 0) _exit(2);
      }
      _exit(0);
    }
  }
  for (int k = 0; k < 4; k++) CHECK_EQ(reap(pids[k]), 0);
  int64_t p;
  cr_shm_get_int(a, peak, 0, &p);
  CHECK(p >= 1 && p <= 2);
  CHECK_EQ(cr_sem_value(a, s), 2);
  cr_arena_close(a);
}

/* A holder killed with its slot: a waiter gets the slot back. */
void test_sync_sem_holder_dies(void) {
  cr_arena_t *a = arena();
  cr_off_t s, held = event(a), never = event(a);
  CHECK_OK(cr_sem_new(a, 1, 1, &s));
  pid_t pid = fork();
  if (pid == 0) {
    cr_sem_acquire(a, s, 5);
    cr_event_set(a, held);
    cr_event_wait(a, never, 0.1);
    raise(SIGKILL);
  }
  CHECK_OK(cr_event_wait(a, held, 10));
  CHECK_EQ(cr_sem_acquire(a, s, 10), 0);
  CHECK_EQ(reap(pid), 100 + SIGKILL);
  CHECK_EQ(cr_sem_value(a, s), 0);
  CHECK_OK(cr_sem_release(a, s));
  CHECK_EQ(cr_sem_release(a, s), CR_EOVERFLOW); /* recovered once, not twice */
  cr_arena_close(a);
}

/* Busy-waits for about `us` microseconds (no sleep: the kill must land
 * while the children run). */
static void spin_for(double us) {
  double end = cr_now() + us * 1e-6;
  while (cr_now() < end) {
  }
}

/* Holders SIGKILLed at random points of their acquire/release loops, round
 * after round on the same semaphore: once they are reaped, every slot can
 * be taken again at once (a failed non-blocking acquire looks for dead
 * holders), and no slot comes back twice (the semaphore is unbounded, so a
 * slot given back twice would show as one more). A kill point is the
 * moment the first slot is seen taken, a random instant of the loops, or
 * the start; the children are killed together or one by one. The seed is printed, and read from CORRAL_SEED if set. */
void test_sync_sem_killed_anywhere(void) {
  cr_arena_t *a = arena();
  cr_off_t s;
  CHECK_OK(cr_sem_new(a, 2, 0, &s));
  const char *env = getenv("CORRAL_SEED");
  unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)getpid();
  fprintf(stderr, "seed %u (CORRAL_SEED=%u replays it)\n", seed, seed);
  srand(seed);
  double end = cr_now() + 4;
  int rounds = 0;
  for (; rounds < 400 && cr_now() < end; rounds++) {
    pid_t pids[3];
    for (int k = 0; k < 3; k++) {
      pids[k] = fork();
      if (pids[k] == 0) {
        /* each child its own mix: blocking, timed, non-blocking, one or
         * two slots held at once */
        for (unsigned i = 0;; i++) {
          double t = (i + (unsigned)k) % 3 == 0 ? -1 : (i % 3 == 1 ? 0.001 : 0);
          if (cr_sem_acquire(a, s, t) != 0) continue;
          int two = (i + (unsigned)k) % 4 == 0 && cr_sem_acquire(a, s, 0) == 0;
          if (two) cr_sem_release(a, s);
          cr_sem_release(a, s);
        }
      }
    }
    switch (rand() % 3) {
      case 0: /* the moment a slot is first taken */
        while (cr_sem_value(a, s) == 2) {
        }
        break;
      case 1: spin_for(rand() % 3000); break;
      default: break; /* at once */
    }
    /* one by one at times, so that survivors reclaim (and die reclaiming) */
    for (int k = 0; k < 3; k++) {
      kill(pids[k], SIGKILL);
      if (rand() % 2) spin_for(rand() % 2000);
    }
    for (int k = 0; k < 3; k++) CHECK_EQ(reap(pids[k]), 100 + SIGKILL);
    int got = 0;
    while (got < 3 && cr_sem_acquire(a, s, 0) == 0) got++;
    if (got != 2) fprintf(stderr, "round %d: %d slots came back, not 2\n", rounds, got);
    CHECK_EQ(got, 2);
    for (int k = 0; k < got; k++) CHECK_OK(cr_sem_release(a, s));
  }
  fprintf(stderr, "%d rounds\n", rounds);
  CHECK(rounds >= 20);
  cr_arena_close(a);
}

void test_sync_event(void) {
  cr_arena_t *a = arena();
  cr_off_t e = event(a), go = event(a);
  CHECK(!cr_event_is_set(a, e));
  CHECK_EQ(cr_event_wait(a, e, 0), CR_ETIMEDOUT);
  CHECK_EQ(cr_event_wait(a, e, 0.03), CR_ETIMEDOUT);
  pid_t pid = fork();
  if (pid == 0) {
    if (cr_event_wait(a, go, 10) != 0) _exit(1);
    cr_event_set(a, e);
    _exit(0);
  }
  cr_event_set(a, go);
  CHECK_EQ(cr_event_wait(a, e, 10), 0);
  CHECK(cr_event_is_set(a, e));
  cr_event_clear(a, e);
  CHECK(!cr_event_is_set(a, e));
  CHECK_EQ(reap(pid), 0);
  cr_arena_close(a);
}

/* n waiters in children; the parent waits until they all sleep. */
static void wait_waiters(cr_arena_t *a, cr_off_t c, int n) {
  double end = cr_now() + 10;
  while (cr_cond_waiters(a, c) < n) {
    CHECK(cr_now() < end);
    cr_sleep(0.001);
  }
}

static pid_t cond_waiter(cr_arena_t *a, cr_off_t c, cr_off_t lock, cr_off_t woken) {
  pid_t pid = fork();
  if (pid == 0) {
    cr_lock_acquire(a, lock, 10);
    int rc = cr_cond_wait(a, c, 10);
    int64_t n;
    cr_shm_add(a, woken, 0, 1, &n);
    cr_lock_release(a, lock);
    _exit(rc == 0 ? 0 : 1);
  }
  return pid;
}

void test_sync_cond_notify(void) {
  cr_arena_t *a = arena();
  cr_off_t l, c, woken;
  CHECK_OK(cr_lock_new(a, &l));
  CHECK_OK(cr_cond_new(a, l, &c));
  CHECK_OK(cr_shm_new(a, CR_OBJ_VALUE, 'i', 1, 0, &woken));
  CHECK_EQ(cr_cond_wait(a, c, 0), CR_ENOTOWNER);
  CHECK_EQ(cr_cond_notify(a, c, 1), CR_ENOTOWNER);
  CHECK_OK(cr_lock_acquire(a, l, -1));
  CHECK_EQ(cr_cond_notify(a, c, 1), 0); /* nobody waits: not stored */
  CHECK_EQ(cr_cond_wait(a, c, 0.02), CR_ETIMEDOUT);
  CHECK(cr_lock_locked(a, l));
  CHECK_OK(cr_lock_release(a, l));
  pid_t pids[3];
  for (int k = 0; k < 3; k++) pids[k] = cond_waiter(a, c, l, woken);
  wait_waiters(a, c, 3);
  CHECK_OK(cr_lock_acquire(a, l, 10));
  CHECK_EQ(cr_cond_notify(a, c, 2), 2);
  CHECK_OK(cr_lock_release(a, l));
  double end = cr_now() + 10;
  int64_t n = 0;
  while (n < 2 && cr_now() < end) cr_shm_get_int(a, woken, 0, &n), cr_sleep(0.001);
  CHECK_EQ(n, 2);
  CHECK_EQ(cr_cond_waiters(a, c), 1);
  CHECK_OK(cr_lock_acquire(a, l, 10));
  CHECK_EQ(cr_cond_notify(a, c, -1), 1);
  CHECK_OK(cr_lock_release(a, l));
  for (int k = 0; k < 3; k++) CHECK_EQ(reap(pids[k]), 0);
  cr_shm_get_int(a, woken, 0, &n);
  CHECK_EQ(n, 3);
  cr_obj_release(a, c, cr_sync_destroy);
  cr_arena_close(a);
}

/* A waiter killed in its wait does not swallow a notify. */
void test_sync_cond_waiter_dies(void) {
  cr_arena_t *a = arena();
  cr_off_t l, c, woken;
  CHECK_OK(cr_rlock_new(a, &l));
  CHECK_OK(cr_cond_new(a, l, &c));
  CHECK_OK(cr_shm_new(a, CR_OBJ_VALUE, 'i', 1, 0, &woken));
  pid_t first = fork();
  if (first == 0) {
    cr_rlock_acquire(a, l, 10);
    cr_cond_wait(a, c, 10);
    _exit(1);
  }
  wait_waiters(a, c, 1);
  kill(first, SIGKILL);
  CHECK_EQ(reap(first), 100 + SIGKILL);
  pid_t pid = fork();
  if (pid == 0) {
    cr_rlock_acquire(a, l, 10);
    cr_rlock_acquire(a, l, 10);
    int rc = cr_cond_wait(a, c, 10);
    int depth = cr_rlock_depth(a, l);
    _exit(rc == 0 && depth == 2 ? 0 : 1);
  }
  wait_waiters(a, c, 2);
  CHECK_OK(cr_rlock_acquire(a, l, 10));
  CHECK_EQ(cr_cond_notify(a, c, 1), 1);
  CHECK_EQ(cr_cond_waiters(a, c), 0); /* the dead one was cleared */
  CHECK_OK(cr_rlock_release(a, l));
  CHECK_EQ(reap(pid), 0);
  cr_arena_close(a);
}

static int count_action(void *arg) {
  cr_arena_t **ctx = arg;
  int64_t n;
  cr_shm_add(ctx[0], (cr_off_t)(uintptr_t)ctx[1], 0, 1, &n);
  return 0;
}

void test_sync_barrier(void) {
  cr_arena_t *a = arena();
  cr_off_t b, actions, seen;
  enum { P = 3, ROUNDS = 200 };
  CHECK_EQ(cr_barrier_new(a, 0, -1, &b), CR_EINVAL);
  CHECK_OK(cr_barrier_new(a, P, -1, &b));
  CHECK_OK(cr_shm_new(a, CR_OBJ_VALUE, 'q', 1, 0, &actions));
  CHECK_OK(cr_shm_new(a, CR_OBJ_ARRAY, 'i', P * ROUNDS, 0, &seen));
  void *ctx[2] = {a, (void *)(uintptr_t)actions};
  pid_t pids[P];
  for (int k = 0; k < P; k++) {
    pids[k] = fork();
    if (pids[k] == 0) {
      for (int r = 0; r < ROUNDS; r++) {
        int idx;
        if (cr_barrier_wait(a, b, 10, &idx, count_action, ctx) != 0) _exit(1);
        int64_t n;
        cr_shm_get_int(a, actions, 0, &n);
        if (n != r + 1) _exit(2); /* the round's action ran, the next one not yet */
        cr_shm_set_int(a, seen, (size_t)(r * P + idx), k + 1);
      }
      _exit(0);
    }
  }
  for (int k = 0; k < P; k++) CHECK_EQ(reap(pids[k]), 0);
  for (int i = 0; i < P * ROUNDS; i++) {
    int64_t v;
    cr_shm_get_int(a, seen, (size_t)i, &v);
    CHECK(v != 0); /* indices unique within each round */
  }
  cr_arena_close(a);
}

void test_sync_barrier_break(void) {
  cr_arena_t *a = arena();
  cr_off_t b;
  CHECK_OK(cr_barrier_new(a, 2, -1, &b));
  int idx;
  /* timeout breaks it, for the late party too */
  CHECK_EQ(cr_barrier_wait(a, b, 0.02, &idx, NULL, NULL), CR_EBROKEN);
  CHECK(cr_barrier_broken(a, b));
  CHECK_EQ(cr_barrier_wait(a, b, 1, &idx, NULL, NULL), CR_EBROKEN);
  CHECK_OK(cr_barrier_reset(a, b));
  CHECK(!cr_barrier_broken(a, b));
  /* abort wakes a waiter */
  pid_t pid = fork();
  if (pid == 0) _exit(cr_barrier_wait(a, b, 10, &idx, NULL, NULL) == CR_EBROKEN ? 0 : 1);
  double end = cr_now() + 10;
  while (cr_barrier_n_waiting(a, b) < 1 && cr_now() < end) cr_sleep(0.001);
  CHECK_OK(cr_barrier_abort(a, b));
  CHECK_EQ(reap(pid), 0);
  /* reset while a party waits: it gets CR_EBROKEN, the barrier works again */
  CHECK_OK(cr_barrier_reset(a, b));
  pid = fork();
  if (pid == 0) _exit(cr_barrier_wait(a, b, 10, &idx, NULL, NULL) == CR_EBROKEN ? 0 : 1);
  end = cr_now() + 10;
  while (cr_barrier_n_waiting(a, b) < 1 && cr_now() < end) cr_sleep(0.001);
  CHECK_OK(cr_barrier_reset(a, b));
  CHECK_EQ(reap(pid), 0);
  pid = fork();
  if (pid == 0) _exit(cr_barrier_wait(a, b, 10, &idx, NULL, NULL) == 0 ? 0 : 1);
  CHECK_EQ(cr_barrier_wait(a, b, 10, &idx, NULL, NULL), 0);
  CHECK_EQ(reap(pid), 0);
  cr_arena_close(a);
}

static void on_sigint(int sig) { (void)sig; }

/* SIGINT interrupts a blocked acquire with CR_EINTR; the lock is intact. */
void test_sync_intr(void) {
  cr_arena_t *a = arena();
  cr_off_t l, done = event(a);
  CHECK_OK(cr_lock_new(a, &l));
  signal(SIGINT, on_sigint);
  CHECK_OK(cr_lock_acquire(a, l, -1));
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    while (cr_event_wait(a, done, 0.01) == CR_ETIMEDOUT) kill(parent, SIGINT);
    _exit(0);
  }
  CHECK_EQ(cr_lock_acquire(a, l, 10), CR_EINTR); /* not reentrant: would wait */
  cr_intr_clear();
  cr_off_t s;
  CHECK_OK(cr_sem_new(a, 0, 0, &s));
  CHECK_EQ(cr_sem_acquire(a, s, 10), CR_EINTR);
  cr_intr_clear();
  cr_event_set(a, done);
  CHECK_EQ(reap(pid), 0);
  CHECK_OK(cr_lock_release(a, l));
  CHECK_EQ(cr_lock_acquire(a, l, 0), 0);
  cr_arena_close(a);
}
