/* The process-wide oneDNN CPU engine and its run-time choices (dnnl_engine_internal.h). */
#include <pthread.h>

#include "dnnl_engine_internal.h"

#ifdef GRAD_HAVE_ONEDNN
static struct {
  pthread_once_t once;
  dnnl_engine_t engine;
  dnnl_cpu_isa_t isa;
} state = {.once = PTHREAD_ONCE_INIT};

static void create_engine(void) {
  if (dnnl_engine_create(&state.engine, dnnl_cpu, 0) != dnnl_success) state.engine = NULL;
  state.isa = dnnl_get_effective_cpu_isa();
}

dnnl_engine_t grad__dnnl_engine(void) {
  pthread_once(&state.once, create_engine);
  return state.engine;
}

/* oneDNN's ISA values are bit sets: a CPU "has" an ISA when it has every bit of it. */
static bool has_isa(dnnl_cpu_isa_t isa) {
  pthread_once(&state.once, create_engine);
  return ((unsigned)state.isa & (unsigned)isa) == (unsigned)isa;
}

bool grad__dnnl_available(void) { return grad__dnnl_engine() != NULL; }

bool grad__dnnl_bf16_native(void) {
  return grad__dnnl_available() &&
         (has_isa(dnnl_cpu_isa_avx512_core_bf16) || has_isa(dnnl_cpu_isa_avx512_core_amx));
}

bool grad__dnnl_amx(void) {
  return grad__dnnl_available() && has_isa(dnnl_cpu_isa_avx512_core_amx);
}

const char *grad__dnnl_isa_name(void) {
  if (!grad__dnnl_available()) return "none";
  if (has_isa(dnnl_cpu_isa_avx512_core_amx)) return "avx512_core_amx";
  if (has_isa(dnnl_cpu_isa_avx512_core_bf16)) return "avx512_core_bf16";
  if (has_isa(dnnl_cpu_isa_avx512_core)) return "avx512_core";
  if (has_isa(dnnl_cpu_isa_avx2)) return "avx2";
  return "sse41";
}

dnnl_format_tag_t grad__dnnl_act_tag(void) {
  if (has_isa(dnnl_cpu_isa_avx512_core)) return dnnl_nChw16c;
  if (has_isa(dnnl_cpu_isa_avx2)) return dnnl_nChw8c;
  return dnnl_nchw;
}

grad_status grad__dnnl_check(dnnl_status_t s, const char *what) {
  switch (s) {
  case dnnl_success: return GRAD_OK;
  case dnnl_out_of_memory: return grad__fail(GRAD_E_NOMEM, "oneDNN: out of memory (%s)", what);
  case dnnl_unimplemented:
    return grad__fail(GRAD_E_UNSUPPORTED, "oneDNN has no implementation of %s on this CPU (%s)",
                      what, grad__dnnl_isa_name());
  default: return grad__fail(GRAD_E_INTERNAL, "oneDNN failed (status %d) in %s", (int)s, what);
  }
}
#else
bool grad__dnnl_available(void) { return false; }
bool grad__dnnl_bf16_native(void) { return false; }
bool grad__dnnl_amx(void) { return false; }
const char *grad__dnnl_isa_name(void) { return "none"; }
#endif

/* ---- Public: what this build and CPU can run ---- */

int grad_engine_available(grad_engine engine) {
  switch (engine) {
  case GRAD_ENGINE_AUTO:
  case GRAD_ENGINE_IM2COL: return 1;
  case GRAD_ENGINE_ONEDNN: return grad__dnnl_available();
  default: return 0;
  }
}

int grad_precision_available(grad_precision precision) {
  switch (precision) {
  case GRAD_PRECISION_FP32: return 1;
  case GRAD_PRECISION_BF16: return grad__dnnl_bf16_native();
  default: return 0;
  }
}

const char *grad_engine_name(grad_engine engine) {
  if (engine == GRAD_ENGINE_AUTO)
    engine = grad__dnnl_available() ? GRAD_ENGINE_ONEDNN : GRAD_ENGINE_IM2COL;
  switch (engine) {
  case GRAD_ENGINE_ONEDNN: return "onednn";
  case GRAD_ENGINE_IM2COL: return "im2col";
  default: return "unknown";
  }
}

const char *grad_precision_name(grad_precision precision) {
  switch (precision) {
  case GRAD_PRECISION_FP32: return "fp32";
  case GRAD_PRECISION_BF16: return "bf16";
  default: return "unknown";
  }
}
