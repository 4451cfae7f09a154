/* libgrad: The grid feature store and its decoder: reconstruction and training (method.md sections 4-6). */
#ifndef GRAD_STORE_H
#define GRAD_STORE_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif /* GRAD_STORE_H */
