/* corral engine tests: tiny assertion helpers. Each test is a function
 * `void test_NAME(void)` that aborts the process on the first failure;
 * ctest runs each one in its own process (see test_list.h). */
#ifndef CORRAL_TEST_H
#define CORRAL_TEST_H

#include <stdio.h>
#include <stdlib.h>

#include "corral.h"

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
      exit(1);                                                                   \
    }                                                                            \
  } while (0)

#define CHECK_EQ(a, b)                                                           \
  do {                                                                           \
    long long a_ = (long long)(a), b_ = (long long)(b);                          \
    if (a_ != b_) {                                                              \
      fprintf(stderr, "%s:%d: check failed: %s == %s (%lld != %lld)\n", __FILE__, \
              __LINE__, #a, #b, a_, b_);                                         \
      exit(1);                                                                   \
    }                                                                            \
  } while (0)

#define CHECK_OK(expr)                                                           \
  do {                                                                           \
    int rc_ = (expr);                                                            \
    if (rc_ < 0) {                                                               \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr,       \
              cr_strerror(rc_));                                                 \
      exit(1);                                                                   \
    }                                                                            \
  } while (0)

#define TEST_ENTRY(name) void test_##name(void);
#include "test_list.h"
#undef TEST_ENTRY

#endif
