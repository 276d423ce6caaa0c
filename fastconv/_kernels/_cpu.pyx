"""CPU feature detection and OpenMP queries (the baseline build answers for the CPU; every build reports itself)."""
cdef extern from "simd.h":
    enum:
        FC_VECTOR_BYTES

cdef extern from *:
    """
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    /* __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0). */
    static int fc_has_avx2_fma(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    static int fc_has_avx512(void) {
        __builtin_cpu_init();
        return fc_has_avx2_fma() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
               && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    }
    #else
    static int fc_has_avx2_fma(void) { return 0; }
    static int fc_has_avx512(void) { return 0; }
    #endif
    #if defined(_OPENMP)
    #include <omp.h>
    static int fc_omp_max_threads(void) { return omp_get_max_threads(); }
    static int fc_openmp(void) { return 1; }
    #else
    static int fc_omp_max_threads(void) { return 1; }
    static int fc_openmp(void) { return 0; }
    #endif
    #if defined(__AVX512F__)
    static const char *fc_compiled_simd = "avx512";
    #elif defined(__AVX2__) && defined(__FMA__)
    static const char *fc_compiled_simd = "avx2+fma";
    #elif defined(__SSE2__)
    static const char *fc_compiled_simd = "sse2";
    #else
    static const char *fc_compiled_simd = "generic";
    #endif
    """
    int fc_has_avx2_fma() nogil
    int fc_has_avx512() nogil
    int fc_omp_max_threads() nogil
    int fc_openmp() nogil
    const char *fc_compiled_simd


def cpu_has_avx2_fma():
    """True when the running CPU supports both AVX2 and FMA."""
    return bool(fc_has_avx2_fma())


def cpu_has_avx512():
    """True when the running CPU (and OS) supports AVX-512 F, VL, BW and DQ (and AVX2 + FMA)."""
    return bool(fc_has_avx512())


def openmp_enabled():
    """True when this module was compiled with OpenMP."""
    return bool(fc_openmp())


def omp_max_threads():
    """omp_get_max_threads() of the OpenMP runtime (1 without OpenMP)."""
    return fc_omp_max_threads()


def compiled_simd():
    """The instruction set this compiled module targets ("avx512", "avx2+fma", "sse2")."""
    return fc_compiled_simd.decode()


def vector_bytes():
    """The width of the GCC vector types in this build's kernels (32 or 64)."""
    return FC_VECTOR_BYTES
