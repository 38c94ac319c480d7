// OpenBLAS's CBLAS interface. Include path comes from pkg-config `openblas`
// (Debian: /usr/include/x86_64-linux-gnu/openblas-pthread), which also provides
// `openblas_set_num_threads` that the generic libblas lacks.
#pragma once
#include <cblas.h>
