/*
 * Per-ISA builds of one C body: a kernel's body is an always-inline
 * function written so GCC vectorises it, and wrappers compiled for AVX-512
 * or AVX2 (the target attributes below) make it that ISA's code. Which build
 * runs follows grad_kernels_isa() (<grad/common.h>), chosen once by CPU
 * features at run time (depthwise_fused.c). Under -std=c11 GCC does not
 * contract a * b + c into FMAs, so the builds round alike.
 */
#ifndef GRAD_ISA_INTERNAL_H
#define GRAD_ISA_INTERNAL_H

#include <grad/common.h> /* grad_kernels_isa */
#include <string.h>

#include "threading.h" /* grad__part_fn */

#define INLINE static inline __attribute__((always_inline))

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_X86_BUILDS 1
#if defined(__clang__)
#define AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))
#else
#define AVX512_TARGET \
  __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma,prefer-vector-width=512")))
#endif
#define AVX2_TARGET __attribute__((target("avx2,fma")))
#endif

/* The build grad_kernels_isa() (<grad/common.h>) names: 2 AVX-512, 1 AVX2,
 * 0 baseline. */
static inline int grad__isa_level(void) {
  const char *name = grad_kernels_isa();
  return !strcmp(name, "avx512") ? 2 : !strcmp(name, "avx2") ? 1 : 0;
}

/* NAME_baseline, _avx2 and _avx512: builds of a pool part (grad__part_fn,
 * threading.h) from one INLINE body(ctx, part, parts); NAME_pick() returns
 * the one of grad__isa_level(). */
#ifdef HAVE_X86_BUILDS
#define GRAD_PART_BUILDS(name, body)                                                     \
  static void name##_baseline(void *c, int p, int n) { body(c, p, n); }                 \
  AVX2_TARGET static void name##_avx2(void *c, int p, int n) { body(c, p, n); }         \
  AVX512_TARGET static void name##_avx512(void *c, int p, int n) { body(c, p, n); }     \
  static grad__part_fn name##_pick(void) {                                              \
    const int level = grad__isa_level();                                                \
    return level == 2 ? name##_avx512 : level == 1 ? name##_avx2 : name##_baseline;     \
  }
#else
#define GRAD_PART_BUILDS(name, body)                                                     \
  static void name##_baseline(void *c, int p, int n) { body(c, p, n); }                 \
  static grad__part_fn name##_pick(void) { return name##_baseline; }
#endif

#endif /* GRAD_ISA_INTERNAL_H */
