/* hil_dl_pattern and hil_dl_chunk_run, spelled out by the preprocessor. */
#include "dl_pattern.h"

#define P4(n) (uint8_t)(n), (uint8_t)((n) + 1), (uint8_t)((n) + 2), (uint8_t)((n) + 3)
#define P16(n) P4(n), P4((n) + 4), P4((n) + 8), P4((n) + 12)
#define P64(n) P16(n), P16((n) + 16), P16((n) + 32), P16((n) + 48)
#define P256 P64(0), P64(64), P64(128), P64(192)
#define P1K P256, P256, P256, P256
#define P4K P1K, P1K, P1K, P1K
#define P8K P4K, P4K
#define P16K P8K, P8K
#define P64K P16K, P16K, P16K, P16K
#define CHUNK '2', '0', '0', '0', '\r', '\n', P8K, '\r', '\n'

#if HIL_DL_BLOCK == 65536
#define PATTERN_BLOCK P64K
#define CHUNK_RUN CHUNK, CHUNK, CHUNK, CHUNK, CHUNK, CHUNK, CHUNK, CHUNK
#elif HIL_DL_BLOCK == 16384
#define PATTERN_BLOCK P16K
#define CHUNK_RUN CHUNK, CHUNK
#else
#error "HIL_DL_BLOCK must be 16384 or 65536"
#endif

const uint8_t hil_dl_pattern[HIL_DL_BLOCK + 256] = {PATTERN_BLOCK, P256};
const uint8_t hil_dl_chunk_run[HIL_DL_CHUNKS_PER_RUN * HIL_DL_CHUNK_WIRE] = {CHUNK_RUN};
