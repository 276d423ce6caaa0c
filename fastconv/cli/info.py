"""Print the version, OpenMP, threads, SIMD level and BLAS this build of fastconv runs with.

Include it in bug reports and next to benchmark figures: the thread count (OMP_NUM_THREADS, or the CPUs this
process may use) and the SIMD level of the loaded kernels (FASTCONV_SIMD overrides the choice) change what the
kernels do; the BLAS library and its thread count decide the speed of the toeplitz algorithm.
"""
import json

__all__ = ["HELP", "add_arguments", "main"]

HELP = "version, OpenMP, threads, SIMD level and BLAS in use"

EPILOG = """fields:
  version              fastconv's version
  openmp               whether the kernels were compiled with OpenMP (else they run serially)
  num_threads          threads fastconv's kernels use
  simd                 SIMD level of the loaded kernel modules
  cpu_avx2_fma         whether this CPU has AVX2 and FMA
  avx2_variant_built   whether the build includes the AVX2 variant
  debug_build          whether bounds checks are compiled in (FASTCONV_DEBUG=1 at build time)
  blas                 the BLAS library (through threadpoolctl) and its thread count
  blas_thread_timeout  per OpenBLAS, the k of the 2**k cycles its idle workers spin
  blas_on_fastconv_threads  the OpenBLAS libraries whose parallel jobs run on fastconv's threads
  algorithms           registered convolution algorithms
  numpy, scipy         versions"""


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="print the fields as one JSON object")


def main(args):
    from .._info import info
    if args.json:
        print(json.dumps(info(print_=False)))
    else:
        info()
    return 0
