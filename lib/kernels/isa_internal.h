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

#endif /* GRAD_ISA_INTERNAL_H */
