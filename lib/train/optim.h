/*
 * The optimiser of docs/method.md section 6, written to match PyTorch step for
 * step: torch.optim.AdamW with two parameter groups (the grids, and
 * everything else), torch.optim.lr_scheduler.StepLR stepped once per epoch,
 * and torch.nn.utils.clip_grad_norm_ on the total L2 norm.
 */
#ifndef GRAD_OPTIM_H
#define GRAD_OPTIM_H

#include "safetensors.h"
#include "store_internal.h"

typedef struct grad__adamw_config {
  double lr[2];         /* indexed by grad__param_group: 0.1 grids, 1e-3 the rest */
  double beta1, beta2;  /* 0.9, 0.999 */
  double eps;           /* 1e-8 */
  double weight_decay;  /* 0.01, decoupled, applied to every parameter */
} grad__adamw_config;

/* The defaults above. */
void grad__adamw_config_init(grad__adamw_config *config);

typedef struct grad__adamw grad__adamw;

/*
 * An optimiser over count parameters (params[i]->grad must not be NULL).
 * The pointer array is copied; the grad__param structs and their value and
 * grad arrays must outlive the optimiser. Moments start at zero, step at 0.
 */
grad_status grad__adamw_create(grad__param *const *params, size_t count,
                               const grad__adamw_config *config, grad__adamw **out);
void grad__adamw_free(grad__adamw *opt);

/* The learning rate of one group from now on (what a scheduler sets). */
void grad__adamw_set_lr(grad__adamw *opt, grad__param_group group, double lr);
double grad__adamw_lr(const grad__adamw *opt, grad__param_group group);
/* Steps taken so far (torch's state["step"]). */
int64_t grad__adamw_steps(const grad__adamw *opt);

/*
 * One AdamW step from the current grads, per element, in float32 as torch
 * does it (single-tensor path):
 *   p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
 */
void grad__adamw_step(grad__adamw *opt);

/*
 * Optimiser state for checkpoints: tensors "<prefix>exp_avg.<param name>"
 * and "<prefix>exp_avg_sq.<param name>" (the parameter's shape) and the
 * metadata key "<prefix>step". Reading checks every shape and requires
 * finite values; the learning rates are not state (the scheduler sets them).
 */
grad_status grad__adamw_write(const grad__adamw *opt, const char *prefix, grad__st_writer *writer);
grad_status grad__adamw_read(grad__adamw *opt, const char *prefix, const grad__st_file *file);

/*
 * StepLR: the learning rate of `epoch` (0-based) is base multiplied by
 * gamma once per completed step_epochs epochs, by repeated multiplication in
 * double as torch's chained form computes it. step_epochs <= 0: constant.
 */
double grad__step_lr(double base, double gamma, int step_epochs, int epoch);

/*
 * torch.nn.utils.clip_grad_norm_: the total L2 norm of all grads (summed in
 * double) is returned; when max_norm > 0 and the norm exceeds it, every grad
 * is scaled by max_norm / (norm + 1e-6). A non-finite norm is returned
 * unchanged and the grads are left alone, for the caller to report.
 */
double grad__clip_grad_norm(grad__param *const *params, size_t count, double max_norm);

#endif
