"""CPU feature detection and OpenMP queries (compiled for the baseline target)."""
cdef extern from *:
    """
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    static int fc_has_avx2_fma(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    #else
    static int fc_has_avx2_fma(void) { return 0; }
    #endif
    #if defined(_OPENMP)
    #include <omp.h>
    static int fc_omp_max_threads(void) { return omp_get_max_threads(); }
    static int fc_openmp(void) { return 1; }
    #else
    static int fc_omp_max_threads(void) { return 1; }
    static int fc_openmp(void) { return 0; }
    #endif
    #if defined(__AVX2__) && defined(__FMA__)
    static const char *fc_compiled_simd = "avx2+fma";
    #elif defined(__SSE2__)
    static const char *fc_compiled_simd = "sse2";
    #else
    static const char *fc_compiled_simd = "generic";
    #endif
    """
    int fc_has_avx2_fma() nogil
    int fc_omp_max_threads() nogil
    int fc_openmp() nogil
    const char *fc_compiled_simd


def cpu_has_avx2_fma():
    """True when the running CPU supports both AVX2 and FMA."""
    return bool(fc_has_avx2_fma())


def openmp_enabled():
    """True when this module was compiled with OpenMP."""
    return bool(fc_openmp())


def omp_max_threads():
    """omp_get_max_threads() of the OpenMP runtime (1 without OpenMP)."""
    return fc_omp_max_threads()


def compiled_simd():
    """The SIMD level this compiled module targets."""
    return fc_compiled_simd.decode()
