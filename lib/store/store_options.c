/*
 * grad_store_create (experimental, <grad/store.h>): a store from public
 * options, and the one mapping from a decoder's name and width to the
 * internal configuration, which model training shares.
 */
#include <string.h>

#include "store_internal.h"

static const grad_store_options default_store = {
  .struct_size = sizeof(grad_store_options),
  .channels = 64,
  .height = 28,
  .width = 28,
  .local_res = 8,
  .global_res = 4,
  .blocks = 2,
  .decoder = NULL,
  .expansion = 0,
  .seed = 0,
};

void grad_store_options_init(grad_store_options *options, size_t struct_size) {
  grad__struct_init(options, struct_size, &default_store, sizeof default_store);
}

grad_status grad__store_decoder_set(grad__store_config *config, const char *decoder,
                                    int expansion) {
  if (!decoder || strcmp(decoder, "basic") == 0) {
    config->decoder = GRAD__DECODER_BASIC;
    config->expansion = expansion;  /* must be 0: grad__store_check_config says so */
  } else if (strcmp(decoder, "crad") == 0) {
    /* CRAD's default width is 4C: 864 at C = 216, as the official code. */
    config->decoder = GRAD__DECODER_CRAD;
    config->expansion = expansion ? expansion : 4 * config->channels;
  } else {
    return grad__fail(GRAD_E_INVALID_ARG, "decoder \"%s\" is neither \"basic\" nor \"crad\"",
                      decoder);
  }
  return GRAD_OK;
}

grad_status grad_store_create(const grad_store_options *options, grad_store **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_store_create: out is NULL");
  *out = NULL;
  grad_store_options o = default_store;
  grad_status s = grad__struct_read("grad_store_options", options,
                                    GRAD__STRUCT_MIN(grad_store_options, channels), &o, sizeof o);
  if (s != GRAD_OK) return s;
  grad__store_config config = {o.channels, o.height, o.width, o.local_res, o.global_res,
                               o.blocks, GRAD__DECODER_BASIC, 0};
  s = grad__store_decoder_set(&config, o.decoder, o.expansion);
  if (s == GRAD_OK) s = grad__store_create(&config, o.seed, out);
  return s == GRAD_OK ? s : grad__fail_context(s, "grad_store_options: ");
}
