/* The body of GET /dl/<n> as constant data (internal): byte i is i mod 256, so any slice that starts at
 * offset (i mod 256) continues the body at position i. Constant, so on the board it stays in flash and
 * a download allocates nothing. */
#ifndef HIL_DL_PATTERN_H
#define HIL_DL_PATTERN_H

#include <stddef.h>
#include <stdint.h>

#include "hil_services.h"

/* Bytes of pattern one send() takes (+256 bytes of run-on so any start offset has a full block). */
#ifndef HIL_DL_BLOCK
#ifdef HIL_SIZES_OF_THE_BOARD
#define HIL_DL_BLOCK 16384
#else
#define HIL_DL_BLOCK 65536
#endif
#endif
/* PROTOCOL.md: chunks of at most 8192 bytes; every full chunk of the body is the same bytes. */
#define HIL_DL_CHUNK 8192
/* A full chunk on the wire: "2000\r\n", 8192 pattern bytes, "\r\n". */
#define HIL_DL_CHUNK_WIRE (6 + HIL_DL_CHUNK + 2)
#define HIL_DL_CHUNKS_PER_RUN (HIL_DL_BLOCK / HIL_DL_CHUNK)

extern const uint8_t hil_dl_pattern[HIL_DL_BLOCK + 256];
/* HIL_DL_CHUNKS_PER_RUN full chunks back to back. */
extern const uint8_t hil_dl_chunk_run[HIL_DL_CHUNKS_PER_RUN * HIL_DL_CHUNK_WIRE];

#endif /* HIL_DL_PATTERN_H */
