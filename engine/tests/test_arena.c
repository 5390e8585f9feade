/* Tests of the shared arena: allocation, zeroing, exhaustion, coalescing,
 * sharing with forked and fd-attached processes, shared objects. */
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>
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
