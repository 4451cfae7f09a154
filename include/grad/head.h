/* libgrad: The scoring head: fusion, anomaly map, image score, threshold (method.md section 7). */
#ifndef GRAD_HEAD_H
#define GRAD_HEAD_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif /* GRAD_HEAD_H */
