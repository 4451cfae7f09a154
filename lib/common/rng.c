/* xoshiro256** with splitmix64 seeding, and the distributions built on it. */
#include <math.h>

#include "rng.h"

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void grad__rng_seed(grad__rng *rng, uint64_t seed) {
  for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

uint64_t grad__rng_u64(grad__rng *rng) {
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double grad__rng_uniform(grad__rng *rng) {
  return (double)(grad__rng_u64(rng) >> 11) * 0x1.0p-53;
}

uint64_t grad__rng_below(grad__rng *rng, uint64_t bound) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % bound; /* reject the biased tail */
  uint64_t x;
  do x = grad__rng_u64(rng);
  while (x >= limit);
  return x % bound;
}

double grad__rng_normal(grad__rng *rng) {
  double u1 = 1.0 - grad__rng_uniform(rng); /* in (0, 1]: log is finite */
  double u2 = grad__rng_uniform(rng);
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void grad__rng_fill_normal(grad__rng *rng, float *out, size_t count, double mean, double std) {
  for (size_t i = 0; i < count; i++) out[i] = (float)(mean + std * grad__rng_normal(rng));
}

void grad__rng_shuffle(grad__rng *rng, int *items, size_t count) {
  for (size_t i = count; i > 1; i--) {
    size_t j = (size_t)grad__rng_below(rng, i);
    int t = items[i - 1];
    items[i - 1] = items[j];
    items[j] = t;
  }
}
