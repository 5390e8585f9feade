/* Tests of the managed objects (corral/managed.h): list and dict
 * operations on raw bytes, many processes at once, a holder killed at each
 * point of each mutation (the structure must read as exactly before or
 * exactly after, and no block may leak), shutdown, and the drop hook.
 * Memory is checked with the arena's own accounting: whatever a test
 * creates, releasing it brings in_use back to where it started. */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

static cr_arena_t *arena(void) {
  cr_arena_t *a;
  CHECK_OK(cr_arena_create(&a, 1 << 24));
  return a;
}

static size_t in_use(cr_arena_t *a) {
  cr_arena_stats_t st;
  cr_arena_stats(a, &st);
  return st.in_use;
}

static int reap(pid_t pid) {
  int st;
  CHECK(waitpid(pid, &st, 0) == pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

/* A sink that copies the bytes into a NUL-terminated string. */
typedef struct {
  char s[256];
  size_t len;
} out_t;

static int copy_sink(void *ud, const void *data, size_t len) {
  out_t *o = ud;
  if (len >= sizeof o->s) return -1;
  memcpy(o->s, data, len);
  o->s[len] = 0;
  o->len = len;
  return 0;
}

static int drops;
static void count_drop(const void *data, size_t len) {
  (void)data;
  (void)len;
  drops++;
}

static void lock(cr_arena_t *a, cr_off_t c) { CHECK_EQ(cr_managed_lock(a, c), 0); }
static void unlock(cr_arena_t *a, cr_off_t c) { cr_managed_unlock(a, c); }

static void append_s(cr_arena_t *a, cr_off_t l, const char *s) { CHECK_OK(cr_list_append(a, l, s, strlen(s))); }
static void set_s(cr_arena_t *a, cr_off_t d, const char *k, const char *v) {
  CHECK_OK(cr_dict_set(a, d, k, strlen(k), v, strlen(v)));
}

/* The list's elements joined with ',' (lock held). */
static const char *list_str(cr_arena_t *a, cr_off_t l, char *buf, size_t cap) {
  buf[0] = 0;
  for (size_t i = 0; i < cr_list_len(a, l); i++) {
    out_t o;
    CHECK_OK(cr_list_get(a, l, i, copy_sink, &o));
    if (i) strncat(buf, ",", cap - strlen(buf) - 1);
    strncat(buf, o.s, cap - strlen(buf) - 1);
  }
  return buf;
}

static int each_join(void *ud, const void *k, size_t kl, const void *v, size_t vl) {
  char *buf = ud;
  size_t n = strlen(buf);
  if (n) buf[n++] = ',';
  memcpy(buf + n, k, kl);
  n += kl;
  buf[n++] = '=';
  memcpy(buf + n, v, vl);
  buf[n + vl] = 0;
  return 0;
}

/* The dict's items as k=v joined with ',' in insertion order. */
static const char *dict_str(cr_arena_t *a, cr_off_t d, char *buf) {
  buf[0] = 0;
  CHECK_OK(cr_dict_each(a, d, each_join, buf));
  return buf;
}

void test_managed_list_ops(void) {
  cr_arena_t *a = arena();
  size_t base = in_use(a);
  drops = 0;
  cr_managed_on_drop(count_drop);
  cr_off_t l;
  char buf[4096];
  CHECK_OK(cr_managed_new(a, 0, CR_MANAGED_LIST, &l));
  CHECK_EQ(cr_managed_type(a, l), CR_MANAGED_LIST);
  lock(a, l);
  CHECK_EQ(cr_list_len(a, l), 0);
  out_t o;
  CHECK_EQ(cr_list_get(a, l, 0, copy_sink, &o), CR_EINVAL);
  CHECK_EQ(cr_list_pop(a, l, 0, NULL, NULL), CR_EINVAL);
  for (int i = 0; i < 20; i++) { /* crosses two growths */
    char s[16];
    snprintf(s, sizeof s, "%d", i);
    append_s(a, l, s);
  }
  CHECK_EQ(cr_list_len(a, l), 20);
  CHECK_OK(cr_list_get(a, l, 19, copy_sink, &o));
  CHECK(strcmp(o.s, "19") == 0);
  /* pop from the end, then from the middle (which shrinks nothing yet) */
  CHECK_OK(cr_list_pop(a, l, 19, copy_sink, &o));
  CHECK(strcmp(o.s, "19") == 0);
  CHECK_OK(cr_list_pop(a, l, 0, copy_sink, &o));
  CHECK(strcmp(o.s, "0") == 0);
  CHECK_EQ(drops, 2);
  while (cr_list_len(a, l) > 3) CHECK_OK(cr_list_pop(a, l, 1, NULL, NULL));
  CHECK(strcmp(list_str(a, l, buf, sizeof buf), "1,17,18") == 0);
  CHECK_OK(cr_list_insert(a, l, 0, "a", 1));
  CHECK_OK(cr_list_insert(a, l, 2, "b", 1));
  CHECK_OK(cr_list_insert(a, l, 5, "z", 1)); /* at the end: append */
  CHECK_EQ(cr_list_insert(a, l, 7, "x", 1), CR_EINVAL);
  CHECK(strcmp(list_str(a, l, buf, sizeof buf), "a,1,b,17,18,z") == 0);
  CHECK_OK(cr_list_set(a, l, 3, "seventeen", 9));
  CHECK_EQ(cr_list_set(a, l, 6, "x", 1), CR_EINVAL);
  uint32_t perm[6] = {5, 4, 3, 2, 1, 0}, bad[6] = {0, 0, 1, 2, 3, 4};
  CHECK_EQ(cr_list_permute(a, l, bad, 6), CR_EINVAL);
  CHECK_EQ(cr_list_permute(a, l, perm, 5), CR_EINVAL);
  CHECK_OK(cr_list_permute(a, l, perm, 6));
  CHECK(strcmp(list_str(a, l, buf, sizeof buf), "z,18,seventeen,b,1,a") == 0);
  CHECK_OK(cr_list_append(a, l, "", 0)); /* empty elements are elements */
  CHECK_EQ(cr_list_len(a, l), 7);
  CHECK_EQ(cr_managed_recoveries(a, l), 0);
  unlock(a, l);
  drops = 0;
  CHECK_EQ(cr_managed_release(a, l), 1);
  CHECK_EQ(drops, 7);
  CHECK_EQ(in_use(a), base);
  cr_managed_on_drop(NULL);
  cr_arena_close(a);
}

void test_managed_dict_ops(void) {
  cr_arena_t *a = arena();
  size_t base = in_use(a);
  cr_off_t d;
  char buf[8192];
  out_t o;
  CHECK_OK(cr_managed_new(a, 0, CR_MANAGED_DICT, &d));
  lock(a, d);
  CHECK_EQ(cr_dict_get(a, d, "k", 1, copy_sink, &o), 0);
  CHECK_EQ(cr_dict_pop(a, d, "k", 1, NULL, NULL), 0);
  CHECK_EQ(cr_dict_set(a, d, "b", 1, "1", 1), 1);
  CHECK_EQ(cr_dict_set(a, d, "a", 1, "2", 1), 1);
  CHECK_EQ(cr_dict_set(a, d, "c", 1, "3", 1), 1);
  CHECK_EQ(cr_dict_set(a, d, "a", 1, "two", 3), 0); /* keeps its place */
  CHECK(strcmp(dict_str(a, d, buf), "b=1,a=two,c=3") == 0);
  CHECK_EQ(cr_dict_get(a, d, "a", 1, copy_sink, &o), 1);
  CHECK(strcmp(o.s, "two") == 0);
  CHECK_EQ(cr_dict_pop(a, d, "b", 1, copy_sink, &o), 1);
  CHECK(strcmp(o.s, "1") == 0);
  CHECK_EQ(cr_dict_set(a, d, "b", 1, "4", 1), 1); /* back, now last */
  CHECK(strcmp(dict_str(a, d, buf), "a=two,c=3,b=4") == 0);
  CHECK_EQ(cr_dict_len(a, d), 3);
  /* keys that differ only after a common prefix, and the empty key */
  CHECK_EQ(cr_dict_set(a, d, "", 0, "empty", 5), 1);
  CHECK_EQ(cr_dict_get(a, d, "", 0, copy_sink, &o), 1);
  CHECK(strcmp(o.s, "empty") == 0);
  /* many keys: growth; then delete most and insert again: compaction */
  for (int i = 0; i < 1000; i++) {
    char k[16];
    snprintf(k, sizeof k, "key%d", i);
    CHECK_EQ(cr_dict_set(a, d, k, strlen(k), k, strlen(k)), 1);
  }
  CHECK_EQ(cr_dict_len(a, d), 1004);
  for (int i = 0; i < 1000; i++) {
    char k[16];
    snprintf(k, sizeof k, "key%d", i);
    CHECK_EQ(cr_dict_get(a, d, k, strlen(k), copy_sink, &o), 1);
    CHECK(strcmp(o.s, k) == 0);
    if (i % 10) CHECK_EQ(cr_dict_pop(a, d, k, strlen(k), NULL, NULL), 1);
  }
  CHECK_EQ(cr_dict_len(a, d), 104);
  for (int r = 0; r < 3; r++)
    for (int i = 0; i < 2000; i++) { /* churn: many compactions */
      char k[16];
      snprintf(k, sizeof k, "tmp%d", i);
      CHECK_EQ(cr_dict_set(a, d, k, 3, "x", 1), i == 0 ? 1 : 0);
      if (i == 1999) CHECK_EQ(cr_dict_pop(a, d, k, 3, NULL, NULL), 1);
    }
  CHECK_EQ(cr_dict_len(a, d), 104);
  CHECK_EQ(cr_dict_get(a, d, "key990", 6, copy_sink, &o), 1);
  CHECK_EQ(cr_dict_get(a, d, "key991", 6, copy_sink, &o), 0);
  unlock(a, d);
  CHECK_OK(cr_managed_close(a, d));
  CHECK_EQ(cr_managed_lock(a, d), CR_ECLOSED);
  CHECK_EQ(cr_managed_release(a, d), 1);
  CHECK_EQ(in_use(a), base);
  cr_arena_close(a);
}

void test_managed_many_processes(void) {
  cr_arena_t *a = arena();
  cr_off_t l, d;
  CHECK_OK(cr_managed_new(a, 0, CR_MANAGED_LIST, &l));
  CHECK_OK(cr_managed_new(a, 0, CR_MANAGED_DICT, &d));
  enum { NPROC = 4, PER = 2000 };
  pid_t pids[NPROC];
  for (int p = 0; p < NPROC; p++) {
    pids[p] = fork();
    if (pids[p] == 0) {
      for (int i = 0; i < PER; i++) {
        int v = p * PER + i;
        lock(a, l);
        CHECK_OK(cr_list_append(a, l, &v, sizeof v));
        unlock(a, l);
        /* read-modify-write of a shared counter under the dict's lock */
        lock(a, d);
        long n = 0;
        out_t o;
        if (cr_dict_get(a, d, "n", 1, copy_sink, &o)) memcpy(&n, o.s, sizeof n);
        n++;
        CHECK_OK(cr_dict_set(a, d, "n", 1, &n, sizeof n));
        unlock(a, d);
      }
      _exit(0);
    }
  }
  for (int p = 0; p < NPROC; p++) CHECK_EQ(reap(pids[p]), 0);
  lock(a, l);
  CHECK_EQ(cr_list_len(a, l), NPROC * PER);
  static unsigned char seen[NPROC * PER];
  for (size_t i = 0; i < NPROC * PER; i++) {
    out_t o;
    CHECK_OK(cr_list_get(a, l, i, copy_sink, &o));
    int v;
    memcpy(&v, o.s, sizeof v);
    CHECK(v >= 0 && v < NPROC * PER && !seen[v]);
    seen[v] = 1;
  }
  unlock(a, l);
  lock(a, d);
  out_t o;
  CHECK_EQ(cr_dict_get(a, d, "n", 1, copy_sink, &o), 1);
  long n;
  memcpy(&n, o.s, sizeof n);
  CHECK_EQ(n, NPROC * PER);
  unlock(a, d);
  cr_arena_close(a);
}

/* ---- a holder killed inside each mutation ------------------------------------ */

typedef struct {
  const char *name;
  int is_list;
  int fill;                 /* elements before the operation */
  void (*op)(cr_arena_t *a, cr_off_t c);
  const char *before, *after;
} kill_case_t;

static void op_append(cr_arena_t *a, cr_off_t c) { append_s(a, c, "new"); }
static void op_set(cr_arena_t *a, cr_off_t c) { CHECK_OK(cr_list_set(a, c, 1, "new", 3)); }
static void op_insert(cr_arena_t *a, cr_off_t c) { CHECK_OK(cr_list_insert(a, c, 0, "new", 3)); }
static void op_pop_end(cr_arena_t *a, cr_off_t c) { CHECK_OK(cr_list_pop(a, c, cr_list_len(a, c) - 1, NULL, NULL)); }
static void op_pop_first(cr_arena_t *a, cr_off_t c) { CHECK_OK(cr_list_pop(a, c, 0, NULL, NULL)); }
static void op_permute(cr_arena_t *a, cr_off_t c) {
  uint32_t perm[3] = {2, 1, 0};
  CHECK_OK(cr_list_permute(a, c, perm, 3));
}
static void op_dset_new(cr_arena_t *a, cr_off_t c) { set_s(a, c, "new", "N"); }
static void op_dset_old(cr_arena_t *a, cr_off_t c) { set_s(a, c, "e1", "N"); }
static void op_dpop(cr_arena_t *a, cr_off_t c) { CHECK_EQ(cr_dict_pop(a, c, "e0", 2, NULL, NULL), 1); }

static void fill(cr_arena_t *a, cr_off_t c, int is_list, int n) {
  for (int i = 0; i < n; i++) {
    char s[16];
    snprintf(s, sizeof s, "e%d", i);
    if (is_list) append_s(a, c, s);
    else set_s(a, c, s, s);
  }
}

static const char *dump(cr_arena_t *a, cr_off_t c, int is_list, char *buf, size_t cap) {
  return is_list ? list_str(a, c, buf, cap) : dict_str(a, c, buf);
}

void test_managed_killed_holder(void) {
  static const kill_case_t cases[] = {
    {"append", 1, 3, op_append, "e0,e1,e2", "e0,e1,e2,new"},
    {"append+grow", 1, 8, op_append, "e0,e1,e2,e3,e4,e5,e6,e7", "e0,e1,e2,e3,e4,e5,e6,e7,new"},
    {"set", 1, 3, op_set, "e0,e1,e2", "e0,new,e2"},
    {"insert", 1, 3, op_insert, "e0,e1,e2", "new,e0,e1,e2"},
    {"pop end", 1, 3, op_pop_end, "e0,e1,e2", "e0,e1"},
    {"pop first", 1, 3, op_pop_first, "e0,e1,e2", "e1,e2"},
    {"permute", 1, 3, op_permute, "e0,e1,e2", "e2,e1,e0"},
    {"dict new", 0, 2, op_dset_new, "e0=e0,e1=e1", "e0=e0,e1=e1,new=N"},
    {"dict new+grow", 0, 8, op_dset_new, "e0=e0,e1=e1,e2=e2,e3=e3,e4=e4,e5=e5,e6=e6,e7=e7",
     "e0=e0,e1=e1,e2=e2,e3=e3,e4=e4,e5=e5,e6=e6,e7=e7,new=N"},
    {"dict replace", 0, 2, op_dset_old, "e0=e0,e1=e1", "e0=e0,e1=N"},
    {"dict pop", 0, 2, op_dpop, "e0=e0,e1=e1", "e1=e1"},
  };
  cr_arena_t *a = arena();
  cr_managed_on_drop(count_drop);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const kill_case_t *tc = &cases[k];
    for (int where = CR_MANAGED_PARK_BEFORE; where <= CR_MANAGED_PARK_AFTER; where++) {
      size_t base = in_use(a);
      cr_off_t c;
      CHECK_OK(cr_managed_new(a, 0, tc->is_list ? CR_MANAGED_LIST : CR_MANAGED_DICT, &c));
      lock(a, c);
      fill(a, c, tc->is_list, tc->fill);
      unlock(a, c);
      pid_t pid = fork();
      if (pid == 0) {
        cr_managed_test_park(where);
        lock(a, c);
        tc->op(a, c);
        _exit(3); /* not reached */
      }
      for (int spin = 0; cr_managed_test_parked(a, c) == 0; spin++) {
        CHECK(spin < 100000);
        usleep(100);
      }
      kill(pid, SIGKILL);
      CHECK_EQ(reap(pid), 100 + SIGKILL);
      lock(a, c); /* recovers */
      CHECK_EQ(cr_managed_recoveries(a, c), 1);
      char buf[512];
      const char *got = dump(a, c, tc->is_list, buf, sizeof buf);
      const char *want = where == CR_MANAGED_PARK_BEFORE ? tc->before : tc->after;
      if (strcmp(got, want) != 0) {
        fprintf(stderr, "%s, killed %s publishing: got %s, want %s\n", tc->name,
                where == CR_MANAGED_PARK_BEFORE ? "before" : "after", got, want);
        CHECK(0);
      }
      if (!tc->is_list) { /* the index was rebuilt: every key is found */
        for (int i = 0; i < tc->fill; i++) {
          char s[16];
          out_t o;
          snprintf(s, sizeof s, "e%d", i);
          CHECK_EQ(cr_dict_get(a, c, s, strlen(s), copy_sink, &o), strstr(want, s) ? 1 : 0);
        }
        size_t pairs = 0;
        for (const char *p = want; *p; p++) pairs += *p == '=';
        CHECK_EQ(cr_dict_len(a, c), pairs);
      }
      /* still works after recovery */
      if (tc->is_list) append_s(a, c, "more");
      else set_s(a, c, "more", "m");
      unlock(a, c);
      CHECK_EQ(cr_managed_release(a, c), 1);
      if (in_use(a) != base) {
        fprintf(stderr, "%s, killed %s publishing: %zu bytes leaked\n", tc->name,
                where == CR_MANAGED_PARK_BEFORE ? "before" : "after", in_use(a) - base);
        CHECK(0);
      }
    }
  }
  cr_managed_on_drop(NULL);
  cr_arena_close(a);
}

void test_managed_shutdown(void) {
  cr_arena_t *a = arena();
  size_t base = in_use(a);
  cr_off_t m, l, d, q, lk, ev;
  CHECK_OK(cr_manager_new(a, &m));
  CHECK_EQ(cr_managed_type(a, m), CR_MANAGED_MANAGER);
  CHECK_OK(cr_managed_new(a, m, CR_MANAGED_LIST, &l));
  CHECK_OK(cr_managed_new(a, m, CR_MANAGED_NAMESPACE, &d));
  CHECK_EQ(cr_managed_type(a, d), CR_MANAGED_NAMESPACE);
  CHECK_OK(cr_queue_new(a, 0, 0, &q));
  CHECK_OK(cr_lock_new(a, &lk));
  CHECK_OK(cr_manager_track(a, m, q));
  CHECK_OK(cr_manager_track(a, m, lk));
  CHECK_EQ(cr_manager_track(a, m, m), CR_EINVAL); /* not a manager in a manager */
  for (int i = 0; i < 40; i++) { /* the registry grows */
    CHECK_OK(cr_event_new(a, &ev));
    CHECK_OK(cr_manager_track(a, m, ev));
    cr_obj_release(a, ev, cr_sync_destroy); /* the registry keeps it alive */
  }
  CHECK_EQ(cr_manager_tracked(a, m), 44);
  lock(a, l);
  append_s(a, l, "x");
  unlock(a, l);
  lock(a, d);
  set_s(a, d, "k", "v");
  unlock(a, d);
  /* a child shuts it down; the parent sees it */
  pid_t pid = fork();
  if (pid == 0) _exit(cr_manager_shutdown(a, m) == 0 ? 0 : 1);
  CHECK_EQ(reap(pid), 0);
  CHECK(cr_manager_is_shutdown(a, m));
  CHECK_EQ(cr_manager_tracked(a, m), 0);
  CHECK_EQ(cr_managed_lock(a, l), CR_ECLOSED);
  CHECK_EQ(cr_managed_lock(a, d), CR_ECLOSED);
  CHECK(cr_managed_is_closed(a, l));
  CHECK(cr_queue_is_closed(a, q));
  CHECK_OK(cr_lock_acquire(a, lk, 0)); /* other objects live on while referenced */
  CHECK_OK(cr_lock_release(a, lk));
  cr_off_t late;
  CHECK_EQ(cr_managed_new(a, m, CR_MANAGED_LIST, &late), CR_ECLOSED);
  CHECK_EQ(cr_manager_track(a, m, lk), CR_ECLOSED);
  CHECK_OK(cr_manager_shutdown(a, m)); /* again: nothing to do */
  cr_managed_release(a, l);
  cr_managed_release(a, d);
  cr_queue_release(a, q);
  cr_obj_release(a, lk, cr_sync_destroy);
  CHECK_EQ(cr_managed_release(a, m), 1);
  CHECK_EQ(in_use(a), base);
  /* a manager whose last reference goes away without a shutdown drops
   * its references; objects referenced elsewhere stay usable */
  CHECK_OK(cr_manager_new(a, &m));
  CHECK_OK(cr_managed_new(a, m, CR_MANAGED_LIST, &l));
  CHECK_EQ(cr_managed_release(a, m), 1);
  lock(a, l);
  append_s(a, l, "still");
  CHECK_EQ(cr_list_len(a, l), 1);
  unlock(a, l);
  CHECK_EQ(cr_managed_release(a, l), 1);
  CHECK_EQ(in_use(a), base);
  cr_arena_close(a);
}

void test_managed_reentrant(void) {
  cr_arena_t *a = arena();
  cr_off_t l;
  CHECK_OK(cr_managed_new(a, 0, CR_MANAGED_LIST, &l));
  CHECK_EQ(cr_managed_type(a, l), CR_MANAGED_LIST);
  CHECK_EQ(cr_managed_new(a, 0, CR_MANAGED_MANAGER, &l), CR_EINVAL);
  CHECK_OK(cr_managed_new(a, 0, CR_MANAGED_LIST, &l));
  lock(a, l);
  CHECK_EQ(cr_managed_lock(a, l), CR_ESTATE); /* not a deadlock */
  unlock(a, l);
  lock(a, l);
  unlock(a, l);
  CHECK_EQ(cr_managed_type(a, 12345), CR_MANAGED_NONE);
  cr_arena_close(a);
}
