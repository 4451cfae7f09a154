/* Choosing OpenBLAS's kernel set for the programs (grad, the benchmarks). */
#ifndef GRAD_CLI_BLAS_KERNELS_H
#define GRAD_CLI_BLAS_KERNELS_H

/*
 * OpenBLAS 0.3.21 does not recognise some recent CPUs and falls back to its
 * generic "Prescott" kernels, 4-8x slower. When it did, and the CPU has
 * AVX-512 or AVX2, this runs the program again (execv of argv) with
 * OPENBLAS_CORETYPE naming the kernel set that fits, which OpenBLAS reads
 * only at start-up; a note goes to stderr when `announce` is set. A user's
 * own OPENBLAS_CORETYPE is always kept. Returns only when nothing changes.
 */
void cli_choose_blas_kernels(char **argv, int announce);

#endif
