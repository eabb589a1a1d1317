/*
 * ctgrind_kernel.c - the RSA kernel's source, compiled for the ctgrind test
 * against the scalar emulation (KW_MB_EMULATE, set by CMake). A file of its
 * own because rsa_mb_kernel.c itself carries the AVX-512 compile flags.
 */
#include "rsa_mb_kernel.c"
