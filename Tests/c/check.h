/* The C tests' counters and CHECK macro: each test program includes this once and ends with
 * printf("%d passed, %d failed\n", passed, failed). */
#ifndef PRUNEKIT_TESTS_CHECK_H
#define PRUNEKIT_TESTS_CHECK_H
#include <stdio.h>

static int passed, failed;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (cond) {                                                            \
            passed++;                                                          \
        } else {                                                               \
            failed++;                                                          \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                         \
            printf(__VA_ARGS__);                                               \
            printf("\n");                                                      \
        }                                                                      \
    } while (0)

#endif
