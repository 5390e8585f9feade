/* corral engine tests: `corral_tests NAME` runs one test; no argument runs
 * each test in a child process of its own and reports. */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

typedef struct {
  const char *name;
  void (*fn)(void);
} test_t;

static const test_t tests[] = {
#define TEST_ENTRY(name) {#name, test_##name},
#include "test_list.h"
#undef TEST_ENTRY
  {NULL, NULL}};

int main(int argc, char **argv) {
  if (argc > 1) {
    for (const test_t *t = tests; t->name; t++)
      if (strcmp(t->name, argv[1]) == 0) {
        t->fn();
        return 0;
      }
    fprintf(stderr, "no test named %s\n", argv[1]);
    return 2;
  }
  int failed = 0, passed = 0;
  for (const test_t *t = tests; t->name; t++) {
    pid_t pid = fork();
    if (pid == 0) {
      t->fn();
      _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    printf("%-40s %s\n", t->name, ok ? "ok" : "FAILED");
    if (ok) passed++;
    else failed++;
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
