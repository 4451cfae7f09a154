/* libgrad: Evaluation metrics: AUROC, AUPRO, F1-max (method.md section 8). */
#ifndef GRAD_EVAL_H
#define GRAD_EVAL_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif /* GRAD_EVAL_H */
