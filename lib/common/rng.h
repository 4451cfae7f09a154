/*
 * A small deterministic random generator (xoshiro256**, seeded through
 * splitmix64): the same seed gives the same numbers on every platform, which
 * seeded weights, shuffling, noise and the synthetic data rely on.
 */
#ifndef GRAD_RNG_H
#define GRAD_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct grad__rng {
  uint64_t s[4];
} grad__rng;

void grad__rng_seed(grad__rng *rng, uint64_t seed);
uint64_t grad__rng_u64(grad__rng *rng);
/* Uniform in [0, 1) with 53 random bits. */
double grad__rng_uniform(grad__rng *rng);
/* Uniform integer in [0, bound), bound > 0, without modulo bias. */
uint64_t grad__rng_below(grad__rng *rng, uint64_t bound);
/* Standard normal (Box-Muller; no cached second value, so the stream
 * position depends only on the number of calls). */
double grad__rng_normal(grad__rng *rng);
/* out[i] = mean + std * N(0, 1). */
void grad__rng_fill_normal(grad__rng *rng, float *out, size_t count, double mean, double std);
/* Fisher-Yates shuffle of an index array. */
void grad__rng_shuffle(grad__rng *rng, int *items, size_t count);

#endif
