/* libgrad: The grid feature store and its decoder: reconstruction and training (method.md sections 4-6). */
#ifndef GRAD_STORE_H
#define GRAD_STORE_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The grid feature store with its coordinate nets and decoder. */
typedef struct grad_store grad_store;

/* Frees the store; NULL is a no-op. */
GRAD_API void grad_store_free(grad_store *store);

#ifdef __cplusplus
}
#endif

#endif /* GRAD_STORE_H */
