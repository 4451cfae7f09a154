/* Checks that the header and the linked library agree, from C. */
#include <grad/grad.h>
#include <stdio.h>

int main(void) {
  printf("libgrad header %d.%d.%d, library %s\n", GRAD_VERSION_MAJOR, GRAD_VERSION_MINOR,
         GRAD_VERSION_PATCH, grad_version_string());
  if (grad_version_number() / 10000 != GRAD_VERSION_MAJOR) {
    fprintf(stderr, "header and library major versions differ\n");
    return 1;
  }
  return 0;
}
