/* Tests of the shared arena: allocation, zeroing, exhaustion, coalescing,
 * sharing with forked and fd-attached processes, shared objects. */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

void test_arena_alloc_free(void) {
  cr_arena_t *a;
  CHECK_OK(cr_arena_create(&a, 1 << 20));
  cr_off_t o1, o2;
  CHECK_OK(cr_arena_alloc(a, 100, &o1));
  CHECK_OK(cr_arena_alloc(a, 100, &o2));
  CHECK(o1 != 0 && o2 != 0 && o1 != o2);
  CHECK((o1 & 15) == 0);
  CHECK(cr_arena_block_size(a, o1) >= 100);
  cr_arena_stats_t st;
  cr_arena_stats(a, &st);
  CHECK_EQ(st.blocks, 2);
  cr_arena_free(a, o1);
  cr_arena_free(a, o2);
  cr_arena_free(a, 0);
  cr_arena_stats(a, &st);
  CHECK_EQ(st.blocks, 0);
  CHECK_EQ(st.in_use, 0);
  CHECK_EQ(cr_arena_alloc(a, 0, &o1), CR_EINVAL);
  cr_arena_close(a);
}

void test_arena_zeroed(void) {
  cr_arena_t *a;
  CHECK_OK(cr_arena_create(&a, 1 << 22));
  for (int round = 0; round < 3; round++) {
    size_t sizes[] = {10, 200, 5000, 70000, 1 << 20};
    cr_off_t offs[5];
    for (int i = 0; i < 5; i++) {
      CHECK_OK(cr_arena_alloc(a, sizes[i], &offs[i]));
      unsigned char *p = cr_arena_ptr(a, offs[i]);
      for (size_t j = 0; j < sizes[i]; j++) CHECK(p[j] == 0);
      memset(p, 0xAB, sizes[i]);
    }
    for (int i = 0; i < 5; i++) cr_arena_free(a, offs[i]);
  }
  cr_arena_close(a);
}

void test_arena_exhaustion(void) {
  cr_arena_t *a;
  CHECK_OK(cr_arena_create(&a, 1 << 20));
  cr_off_t o;
  CHECK_EQ(cr_arena_alloc(a, 2 << 20, &o), CR_ENOMEM);
  int n = 0;
  cr_off_t offs[64];
  while (n < 64 && cr_arena_alloc(a, 100000, &offs[n]) == 0) n++;
  CHECK(n > 0 && n < 64);
  CHECK_EQ(cr_arena_alloc(a, 100000, &o), CR_ENOMEM);
  for (int i = 0; i < n; i++) cr_arena_free(a, offs[i]);
  CHECK_OK(cr_arena_alloc(a, 600000, &o)); /* everything coalesced again */
  cr_arena_close(a);
}

void test_arena_coalesce(void) {
  cr_arena_t *a;
  CHECK_OK(cr_arena_create(&a, 1 << 20));
  cr_off_t offs[1000];
  unsigned seed = 7;
  for (int i = 0; i < 1000; i++) CHECK_OK(cr_arena_alloc(a, 1 + (rand_r(&seed) % 500), &offs[i]));
  for (int i = 0; i < 1000; i += 2) cr_arena_free(a, offs[i]);
  for (int i = 1; i < 1000; i += 2) cr_arena_free(a, offs[i]);
  cr_off_t big;
  CHECK_OK(cr_arena_alloc(a, (1 << 20) - 64, &big));
  cr_arena_close(a);
}

void test_arena_shared_with_fork(void) {
  cr_arena_t *a;
  CHECK_OK(cr_arena_create(&a, 0));
  cr_off_t o;
  CHECK_OK(cr_arena_alloc(a, 64, &o));
  pid_t pid = fork();
  if (pid == 0) {
    cr_off_t mine;
    if (cr_arena_alloc(a, 64, &mine) < 0) _exit(3);
    strcpy(cr_arena_ptr(a, o), "from child");
    *(cr_off_t *)((char *)cr_arena_ptr(a, o) + 32) = mine;
    _exit(0);
  }
  int st;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK(strcmp(cr_arena_ptr(a, o), "from child") == 0);
  cr_off_t theirs = *(cr_off_t *)((char *)cr_arena_ptr(a, o) + 32);
  CHECK(cr_arena_block_size(a, theirs) >= 64); /* the child's block is live here */
  cr_arena_free(a, theirs);
  cr_arena_close(a);
}

void test_arena_attach_fd(void) {
  cr_arena_t *a, *b;
  CHECK_OK(cr_arena_create(&a, 1 << 20));
  cr_off_t o;
  CHECK_OK(cr_arena_alloc(a, 64, &o));
  strcpy(cr_arena_ptr(a, o), "shared");
  int fd2 = dup(cr_arena_fd(a));
  CHECK_OK(cr_arena_attach(&b, fd2));
  CHECK(strcmp(cr_arena_ptr(b, o), "shared") == 0);
  CHECK(cr_arena_ptr(b, o) != cr_arena_ptr(a, o)); /* another mapping */
  cr_arena_close(b);
  int fd3 = memfd_create("not-an-arena", 0);
  CHECK(ftruncate(fd3, 8 << 20) == 0);
  CHECK_EQ(cr_arena_attach(&b, fd3), CR_ECORRUPT);
  close(fd3);
  cr_arena_close(a);
}

static int destroyed;
static void destroy_test(cr_arena_t *a, cr_off_t off) {
  (void)a;
  (void)off;
  destroyed++;
}

void test_arena_objects(void) {
  cr_arena_t *a;
  CHECK_OK(cr_arena_create(&a, 1 << 20));
  cr_off_t o;
  CHECK_OK(cr_obj_new(a, CR_OBJ_TEST, 64, &o));
  CHECK_OK(cr_obj_check(a, o, CR_OBJ_TEST));
  CHECK_EQ(cr_obj_check(a, o, CR_OBJ_QUEUE), CR_EINVAL);
  CHECK_EQ(cr_obj_check(a, o + 16, CR_OBJ_TEST), CR_EINVAL);
  CHECK_EQ(cr_obj_check(a, 12345, CR_OBJ_TEST), CR_EINVAL);
  CHECK_EQ(cr_obj_check(a, (cr_off_t)1 << 40, CR_OBJ_TEST), CR_EINVAL);
  cr_obj_retain(a, o);
  CHECK_EQ(cr_obj_release(a, o, destroy_test), 0);
  CHECK_EQ(destroyed, 0);
  CHECK_EQ(cr_obj_release(a, o, destroy_test), 1);
  CHECK_EQ(destroyed, 1);
  CHECK_EQ(cr_obj_check(a, o, CR_OBJ_TEST), CR_EINVAL);
  CHECK(strcmp(cr_obj_kind_name(CR_OBJ_QUEUE), "Queue") == 0);
  cr_arena_close(a);
}

void test_errors_names(void) {
  CHECK(strcmp(cr_err_kind(CR_ETIMEDOUT), "Timeout") == 0);
  CHECK(strcmp(cr_err_kind(CR_EOWNERDEAD), "OwnerDied") == 0);
  CHECK(strcmp(cr_err_name(CR_ENOMEM), "ENOMEM") == 0);
  CHECK(strcmp(cr_err_kind(-2), "OSError") == 0);
  CHECK(strcmp(cr_strerror(-2), "No such file or directory") == 0);
  CHECK(strcmp(cr_err_name(-2), "ENOENT") == 0);
}

/* ---- processes killed inside the allocator ---- */

#define CHURN_LIVE 24

/* Allocates and frees blocks of random sizes for ever. Each block it gets
 * must be zeroed; it fills the block with a pattern of its own and checks
 * the pattern before freeing it, so a block handed out twice (free lists
 * broken by a process killed mid-edit) shows. Exits 2 on either fault.
 * rec: CHURN_LIVE words in the arena where it records its blocks, which
 * it frees through their records (cr_arena_free_rec); NULL: its own. */
static void churn(cr_arena_t *a, unsigned seed, cr_off_t *rec) {
  cr_off_t mine[CHURN_LIVE] = {0}, *live = rec ? rec : mine;
  size_t len[CHURN_LIVE] = {0};
  unsigned char tag = (unsigned char)(getpid() | 1);
  for (;;) {
    seed = seed * 1103515245u + 12345u;
    unsigned i = (seed >> 8) % CHURN_LIVE;
    if (live[i]) {
      unsigned char *p = cr_arena_ptr(a, live[i]);
      for (size_t k = 0; k < len[i]; k++)
        if (p[k] != tag) _exit(2);
      if (rec) {
        cr_arena_free_rec(a, &live[i]);
      } else {
        cr_arena_free(a, live[i]);
        live[i] = 0;
      }
    } else {
      size_t n = 16 + (seed >> 4) % (((seed >> 20) & 3) == 0 ? 40000 : 600);
      if (cr_arena_alloc(a, n, &live[i]) < 0) {
        live[i] = 0;
        continue;
      }
      unsigned char *p = cr_arena_ptr(a, live[i]);
      for (size_t k = 0; k < n; k++)
        if (p[k]) _exit(2);
      memset(p, tag, n);
      len[i] = n;
    }
  }
}

static int reap_status(pid_t pid) {
  int st;
  CHECK(waitpid(pid, &st, 0) == pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

/* A churner with its records at rec (NULL: its own), that dies with the
 * test. */
static pid_t fork_churner(cr_arena_t *a, cr_off_t *rec) {
  unsigned seed = (unsigned)rand();
  pid_t parent = getpid(), pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0);
    churn(a, seed, rec);
  }
  return pid;
}

/* Kills a churner of the three, and frees what its records name (recs:
 * the offsets of their tables, or NULL), as the recovery of a record
 * does: once the allocator is settled, each names a live block or 0. */
static void kill_churner(cr_arena_t *a, pid_t *pids, const cr_off_t *recs, int k) {
  kill(pids[k], SIGKILL);
  int st = reap_status(pids[k]);
  if (st != 100 + SIGKILL) fprintf(stderr, "a churner ended with %d\n", st);
  CHECK_EQ(st, 100 + SIGKILL);
  if (!recs) return;
  cr_arena_settle(a);
  cr_off_t *rec = cr_arena_ptr(a, recs[k]);
  for (int i = 0; i < CHURN_LIVE; i++) {
    CHECK(rec[i] == 0 || cr_arena_block_size(a, rec[i]) > 0);
    cr_arena_free_rec(a, &rec[i]);
  }
}

/* Runs three churners for `seconds`, SIGKILLing one at a random instant
 * (at most 2000 times) and starting another in its place, then kills them
 * all. The seed is printed, and read from CORRAL_SEED if set. Returns the
 * number of kills. */
static int churn_and_kill(cr_arena_t *a, double seconds, const cr_off_t *recs) {
  const char *env = getenv("CORRAL_SEED");
  unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)getpid();
  fprintf(stderr, "seed %u (CORRAL_SEED=%u replays it)\n", seed, seed);
  srand(seed);
  pid_t pids[3];
  for (int k = 0; k < 3; k++) pids[k] = fork_churner(a, recs ? cr_arena_ptr(a, recs[k]) : NULL);
  double end = cr_now() + seconds;
  int kills = 0;
  while (cr_now() < end && kills < 2000) {
    double until = cr_now() + (rand() % 2000) * 1e-6;
    while (cr_now() < until) {
    }
    int k = rand() % 3;
    kill_churner(a, pids, recs, k);
    kills++;
    pids[k] = fork_churner(a, recs ? cr_arena_ptr(a, recs[k]) : NULL);
  }
  for (int k = 0; k < 3; k++) kill_churner(a, pids, recs, k);
  fprintf(stderr, "%d kills\n", kills);
  return kills;
}

/* Processes that allocate and free all the time are SIGKILLed at random
 * instants (most of them inside the allocator, which they hold most of
 * the time), one at a time while the others go on. No block is ever
 * handed out twice or unzeroed, nobody hangs or finds the arena corrupt,
 * and once they are all gone every byte that is not a dead process's own
 * block can be allocated again: the arena fills up to what it counts as in
 * use. */
void test_arena_killed_anywhere(void) {
  cr_arena_t *a;
  CHECK_OK(cr_arena_create(&a, 1 << 24));
  CHECK(churn_and_kill(a, 4, NULL) >= 50);
  /* Fill the arena with 64-byte blocks: each one zeroed, none overlapping
   * another, and all the bytes not counted as in use are found. */
  cr_arena_stats_t st;
  cr_arena_stats(a, &st);
  size_t room = st.size - st.in_use, got = 0, cap = st.size / 64;
  cr_off_t *offs = calloc(cap, sizeof *offs);
  CHECK(offs != NULL);
  size_t n = 0;
  while (n < cap && cr_arena_alloc(a, 64 - 16, &offs[n]) == 0) {
    unsigned char *p = cr_arena_ptr(a, offs[n]);
    for (int k = 0; k < 48; k++) CHECK(p[k] == 0);
    memset(p, 0xa5, 48);
    got += 64;
    n++;
  }
  CHECK_EQ(got, room);
  for (size_t i = 0; i < n; i++) {
    unsigned char *p = cr_arena_ptr(a, offs[i]);
    for (int k = 0; k < 48; k++) CHECK(p[k] == 0xa5); /* nobody else got it */
    cr_arena_free(a, offs[i]);
  }
  free(offs);
  cr_arena_stats(a, &st);
  CHECK_EQ(st.size - st.in_use, room);
  cr_arena_close(a);
}

/* The same with blocks recorded in the arena, as a queue records its
 * message blocks: each churner allocates into and frees from words of its
 * own in the arena (cr_arena_alloc, cr_arena_free_rec), and once it is
 * killed, the parent frees every block those words still name. No block
 * is then freed twice or lost: once every churner has gone the arena is
 * empty but for the records, and it fills up entirely. */
void test_arena_killed_with_records(void) {
  cr_arena_t *a;
  CHECK_OK(cr_arena_create(&a, 1 << 24));
  cr_off_t recs[3];
  for (int k = 0; k < 3; k++) CHECK_OK(cr_arena_alloc(a, CHURN_LIVE * sizeof(cr_off_t), &recs[k]));
  CHECK(churn_and_kill(a, 3, recs) >= 50);
  for (int k = 0; k < 3; k++) cr_arena_free(a, recs[k]);
  cr_arena_stats_t st;
  cr_arena_stats(a, &st);
  CHECK_EQ(st.blocks, 0);
  CHECK_EQ(st.in_use, 0);
  cr_off_t all;
  CHECK_OK(cr_arena_alloc(a, st.size - 16, &all)); /* one free block again */
  cr_arena_free(a, all);
  cr_arena_close(a);
}
