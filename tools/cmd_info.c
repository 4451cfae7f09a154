/* grad info: the tensors and metadata of a safetensors file (issue 2). */
#include <stdio.h>

#include "cli.h"

int cmd_info(int argc, char **argv) {
  return cli_usage_error("info", "not built yet");
}
