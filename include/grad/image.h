/* libgrad: Image decoding, encoding, resizing and normalisation (method.md section 1). */
#ifndef GRAD_IMAGE_H
#define GRAD_IMAGE_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif /* GRAD_IMAGE_H */
