/* libgrad: The frozen ResNet/WideResNet feature extractor and its neck (method.md sections 2-3). */
#ifndef GRAD_BACKBONE_H
#define GRAD_BACKBONE_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif /* GRAD_BACKBONE_H */
