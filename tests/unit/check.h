/*
** CHECK for the single-threaded C tests: counts passes and failures and
** prints each failure with its place. A test ends with
** printf("%d passed, %d failed\n", nPass, nFail).
*/
#ifndef GPT_TEST_CHECK_H
#define GPT_TEST_CHECK_H
#include <stdio.h>

static int nPass = 0, nFail = 0;

#define CHECK(cond, ...)                                  \
  do {                                                    \
    if (cond) {                                           \
      nPass++;                                            \
    } else {                                              \
      nFail++;                                            \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);         \
      printf(__VA_ARGS__);                                \
      printf("\n");                                       \
    }                                                     \
  } while (0)

#endif
