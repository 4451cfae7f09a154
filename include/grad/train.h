/* libgrad: Training a model on normal images, with progress and cancellation. */
#ifndef GRAD_TRAIN_H
#define GRAD_TRAIN_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif /* GRAD_TRAIN_H */
