/* fuzz_probe.c: configure-time probe (tests/meson.build) that clang can link a libFuzzer
 * target with UBSan here; libclang-rt-14-dev provides the runtimes on Debian 12. Never
 * run. */
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return data != NULL && size > 1000000; }
