/*
 * The oneDNN engine shared by every user of oneDNN primitives in the
 * library (the backbone, and the decoder's training when it moves there):
 * one CPU engine per process, the choices made from the CPU's features at
 * run time (never from a table of CPU models), and oneDNN's status codes
 * turned into grad_status with a message. Threads: oneDNN's Debian build
 * runs on OpenMP; threading.h's grad__team_enter/leave give a call its
 * thread count.
 */
#ifndef GRAD_DNNL_ENGINE_INTERNAL_H
#define GRAD_DNNL_ENGINE_INTERNAL_H

#include <stdbool.h>

#include "core.h"

/* True when the library was built with oneDNN and its CPU engine works. */
bool grad__dnnl_available(void);
/* True when oneDNN runs bf16 natively here (AVX512_BF16 or AMX). */
bool grad__dnnl_bf16_native(void);
/* True when oneDNN runs bf16 on AMX tiles here (far above AVX-512's rate). */
bool grad__dnnl_amx(void);
/* oneDNN's name of the instruction set it dispatches to ("avx512_core_bf16", ...). */
const char *grad__dnnl_isa_name(void);

#ifdef GRAD_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>

/* The process's CPU engine (created on first use); NULL when unavailable. */
dnnl_engine_t grad__dnnl_engine(void);

/* The activation layout between layers: channels in blocks of the vector
 * width (16 with AVX-512, 8 with AVX2), plain N,C,H,W below that. */
dnnl_format_tag_t grad__dnnl_act_tag(void);

/* GRAD_OK for dnnl_success, else a failure naming `what` (NOMEM for
 * oneDNN's out-of-memory, UNSUPPORTED for "no implementation here",
 * INTERNAL for the rest). */
grad_status grad__dnnl_check(dnnl_status_t s, const char *what);
#endif

#endif /* GRAD_DNNL_ENGINE_INTERNAL_H */
