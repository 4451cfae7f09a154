/* libgrad: The model a user trains, saves, loads and scores with. */
#ifndef GRAD_MODEL_H
#define GRAD_MODEL_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif /* GRAD_MODEL_H */
