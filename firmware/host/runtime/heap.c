/*
 * The firmware's heap: the malloc family of the whole process, replaced (glibc supports replacing
 * malloc) so that every allocation - smoltcp's buffers, the services', libc's own - is charged to
 * the fixed budget kept by the stack crate (hs_heap_*). Past the budget malloc returns NULL, as
 * heap_caps_malloc does on the board; heap_free/heap_min_free in HIL_STATS are this budget's.
 *
 * Each block carries a 16-byte header (its charged size and the distance back to the real block),
 * so free() knows what to give back. Not linked into sanitizer builds: ASan owns malloc there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "hil_stack.h"

void *__libc_malloc(size_t size);
void *__libc_memalign(size_t alignment, size_t size);
void __libc_free(void *ptr);

#define HEADER 16u

typedef struct {
    size_t charged; /* bytes asked of the real allocator for this block */
    size_t offset;  /* user pointer - real block */
} header_t;

static header_t *header_of(void *ptr)
{
    return (header_t *)((char *)ptr - sizeof(header_t));
}

static void *allocate(size_t alignment, size_t size)
{
    size_t offset = alignment > HEADER ? alignment : HEADER;
    if (size > SIZE_MAX - offset) {
        errno = ENOMEM;
        return NULL;
    }
    size_t charged = size + offset;
    if (!hs_heap_reserve(charged)) {
        errno = ENOMEM;
        return NULL;
    }
    char *block = offset == HEADER ? __libc_malloc(charged) : __libc_memalign(offset, charged);
    if (block == NULL) {
        hs_heap_release(charged);
        errno = ENOMEM;
        return NULL;
    }
    char *user = block + offset;
    *header_of(user) = (header_t){.charged = charged, .offset = offset};
    return user;
}

void *malloc(size_t size)
{
    return allocate(HEADER, size);
}

void free(void *ptr)
{
    if (ptr == NULL) {
        return;
    }
    header_t h = *header_of(ptr);
    hs_heap_release(h.charged);
    __libc_free((char *)ptr - h.offset);
}

void *calloc(size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    void *ptr = allocate(HEADER, count * size);
    if (ptr != NULL) {
        memset(ptr, 0, count * size);
    }
    return ptr;
}

size_t malloc_usable_size(void *ptr)
{
    if (ptr == NULL) {
        return 0;
    }
    header_t *h = header_of(ptr);
    return h->charged - h->offset;
}

void *realloc(void *ptr, size_t size)
{
    if (ptr == NULL) {
        return malloc(size);
    }
    if (size == 0) {
        free(ptr);
        return NULL;
    }
    size_t old = malloc_usable_size(ptr);
    if (size <= old && header_of(ptr)->offset == HEADER && old - size < 4096) {
        return ptr; /* shrinking a little: keep the block */
    }
    void *fresh = malloc(size);
    if (fresh != NULL) {
        memcpy(fresh, ptr, old < size ? old : size);
        free(ptr);
    }
    return fresh;
}

void *reallocarray(void *ptr, size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(ptr, count * size);
}

int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) {
        return EINVAL;
    }
    void *ptr = allocate(alignment, size);
    if (ptr == NULL) {
        return ENOMEM;
    }
    *out = ptr;
    return 0;
}

void *memalign(size_t alignment, size_t size)
{
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
        errno = EINVAL;
        return NULL;
    }
    return allocate(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size)
{
    return memalign(alignment, size);
}

void *valloc(size_t size)
{
    return allocate(4096, size);
}

void *pvalloc(size_t size)
{
    return allocate(4096, (size + 4095) & ~(size_t)4095);
}
