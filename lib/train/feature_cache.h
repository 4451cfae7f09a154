/*
 * The cached (reduced) features of all training images, n x C x H x W
 * float32, filled once and read by every epoch (the backbone never trains,
 * docs/method.md section 6).
 *
 * Where the data lives: in memory when n*C*H*W*4 bytes fit under the
 * memory limit (default GRAD__FEATURE_CACHE_DEFAULT_LIMIT, 2 GiB);
 * otherwise in a temporary file that is unlinked as soon as it is created
 * (so nothing is left behind, even after a crash), reserved in full with
 * posix_fallocate (a full disk fails here with GRAD_E_IO rather than later
 * with SIGBUS), and memory-mapped shared, so the kernel's page cache holds
 * what fits and pages the rest from disk.
 */
#ifndef GRAD_FEATURE_CACHE_H
#define GRAD_FEATURE_CACHE_H

#include <stdbool.h>

#include "core.h"

#define GRAD__FEATURE_CACHE_DEFAULT_LIMIT ((size_t)2 << 30)

typedef struct grad__feature_cache grad__feature_cache;

/*
 * A zero-filled cache of `images` maps of channels x height x width.
 * memory_limit 0 means the default. spill_dir is where a spill file goes;
 * NULL means $TMPDIR, or /tmp when that is unset.
 */
grad_status grad__feature_cache_create(int images, int channels, int height, int width,
                                       size_t memory_limit, const char *spill_dir,
                                       grad__feature_cache **out);
/* A read-only cache over the caller's n x C x H x W floats, which must
 * outlive it: nothing is copied, grad__feature_cache_image gives NULL, and
 * freeing it leaves the data alone (grad_store_train's features). */
grad_status grad__feature_cache_wrap(const float *data, int images, int channels, int height,
                                     int width, grad__feature_cache **out);
/* Unmaps / frees; the spill file's space goes back to the disk. NULL is a no-op. */
void grad__feature_cache_free(grad__feature_cache *cache);

int grad__feature_cache_count(const grad__feature_cache *cache);
int grad__feature_cache_channels(const grad__feature_cache *cache);
int grad__feature_cache_height(const grad__feature_cache *cache);
int grad__feature_cache_width(const grad__feature_cache *cache);
/* True when the data lives in the memory-mapped temporary file. */
bool grad__feature_cache_spilled(const grad__feature_cache *cache);
/* n*C*H*W*4. */
size_t grad__feature_cache_bytes(const grad__feature_cache *cache);

/* Image `index`'s C x H x W floats, to fill or read; NULL when out of range
 * or the cache is a read-only wrap. */
float *grad__feature_cache_image(grad__feature_cache *cache, int index);
const float *grad__feature_cache_image_const(const grad__feature_cache *cache, int index);

/* Copies images indices[0..count) into out (count x C x H x W) in that order. */
grad_status grad__feature_cache_gather(const grad__feature_cache *cache, const int *indices,
                                       int count, float *out);

#endif
