/* Tests of shared Values and Arrays: typecodes, ranges, zero fill, atomic
 * add and compare-and-set, writes from a child seen by the parent. */
#define _GNU_SOURCE
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

void test_shm_typecodes(void) {
  cr_arena_t *a;
  CHECK_OK(cr_arena_create(&a, 1 << 22));
  const char *codes = "bBhHiIlLqQfdc";
  int sizes[] = {1, 1, 2, 2, 4, 4, 8, 8, 8, 8, 4, 8, 1};
  for (int i = 0; codes[i]; i++) CHECK_EQ(cr_shm_itemsize(codes[i]), sizes[i]);
  CHECK_EQ(cr_shm_itemsize('x'), CR_EINVAL);
  cr_off_t v;
  CHECK_EQ(cr_shm_new(a, CR_OBJ_VALUE, 'x', 1, 0, &v), CR_EINVAL);
  CHECK_EQ(cr_shm_new(a, CR_OBJ_VALUE, 'i', 2, 0, &v), CR_EINVAL);
  CHECK_OK(cr_shm_new(a, CR_OBJ_VALUE, 'b', 1, 0, &v));
  CHECK_EQ(cr_shm_set_int(a, v, 0, 128), CR_EOVERFLOW);
  CHECK_OK(cr_shm_set_int(a, v, 0, -128));
  int64_t x;
  CHECK_OK(cr_shm_get_int(a, v, 0, &x));
  CHECK_EQ(x, -128);
  CHECK_EQ(cr_shm_add(a, v, 0, -1, &x), CR_EOVERFLOW);
  CHECK_OK(cr_shm_add(a, v, 0, 255, &x));
  CHECK_EQ(x, 127);
  CHECK_EQ(cr_shm_cas(a, v, 0, 127, 5), 1);
  CHECK_EQ(cr_shm_cas(a, v, 0, 127, 6), 0);
  CHECK_EQ(cr_shm_cas(a, v, 0, 5, 500), CR_EOVERFLOW);
  CHECK_EQ(cr_shm_get_int(a, v, 1, &x), CR_EINVAL);
  cr_off_t u;
  CHECK_OK(cr_shm_new(a, CR_OBJ_VALUE, 'I', 1, 0, &u));
  CHECK_EQ(cr_shm_set_int(a, u, 0, -1), CR_EOVERFLOW);
  CHECK_OK(cr_shm_set_int(a, u, 0, 4294967295LL));
  CHECK_OK(cr_shm_get_int(a, u, 0, &x));
  CHECK_EQ(x, 4294967295LL);
  cr_off_t f;
  CHECK_OK(cr_shm_new(a, CR_OBJ_VALUE, 'f', 1, 0, &f));
  CHECK_OK(cr_shm_set_float(a, f, 0, 0.1));
  double d;
  CHECK_OK(cr_shm_get_float(a, f, 0, &d));
  CHECK(d == (double)0.1f);
  CHECK_EQ(cr_shm_set_int(a, f, 0, 1), CR_EINVAL);
  cr_arena_close(a);
}

void test_shm_array_shared(void) {
  cr_arena_t *a;
  CHECK_OK(cr_arena_create(&a, 1 << 22));
  cr_off_t l, arr;
  CHECK_OK(cr_lock_new(a, &l));
  CHECK_OK(cr_shm_new(a, CR_OBJ_ARRAY, 'd', 1000, l, &arr));
  CHECK_EQ(cr_shm_lock(a, arr), l);
  CHECK_EQ(cr_shm_len(a, arr), 1000);
  for (size_t i = 0; i < 1000; i++) {
    double d;
    CHECK_OK(cr_shm_get_float(a, arr, i, &d));
    CHECK(d == 0);
  }
  pid_t pid = fork();
  if (pid == 0) {
    for (size_t i = 0; i < 1000; i++) cr_shm_set_float(a, arr, i, (double)i / 2);
    _exit(0);
  }
  int st;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  double d;
  CHECK_OK(cr_shm_get_float(a, arr, 999, &d));
  CHECK(d == 499.5);
  /* the array holds the lock: it outlives the caller's reference */
  CHECK_EQ(cr_obj_release(a, l, cr_sync_destroy), 0);
  CHECK_OK(cr_obj_check(a, l, CR_OBJ_LOCK));
  CHECK_EQ(cr_obj_release(a, arr, cr_sync_destroy), 1);
  CHECK(cr_obj_check(a, l, CR_OBJ_LOCK) < 0);
  cr_arena_close(a);
}
