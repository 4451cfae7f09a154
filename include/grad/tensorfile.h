/* libgrad: Reading and writing safetensors weight and model files. */
#ifndef GRAD_TENSORFILE_H
#define GRAD_TENSORFILE_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif /* GRAD_TENSORFILE_H */
