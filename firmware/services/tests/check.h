/* The C unit tests' one assertion macro: counts checks, prints each failure, never stops. */
#ifndef HIL_TEST_CHECK_H
#define HIL_TEST_CHECK_H

#include <stdio.h>

extern int checks;
extern int failures;

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        checks++;                                                                                                      \
        if (!(cond)) {                                                                                                 \
            failures++;                                                                                                \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                                \
            printf(__VA_ARGS__);                                                                                       \
            printf("\n");                                                                                              \
        }                                                                                                              \
    } while (0)

/* test_codecs.c: SHA-1/base64, WebSocket framing, HTTP parsing, chunked coding, URLs, MQTT packets. */
void run_codec_tests(void);

#endif /* HIL_TEST_CHECK_H */
