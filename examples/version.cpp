// The same check from C++: the header is extern "C" and compiles as C++.
#include <grad/grad.h>

#include <iostream>

int main() {
  std::cout << "libgrad " << grad_version_string() << " from C++, status name: "
            << grad_status_name(GRAD_E_FORMAT) << '\n';
  return grad_version_number() == GRAD_VERSION_NUMBER ? 0 : 1;
}
