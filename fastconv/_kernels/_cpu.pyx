"""CPU feature detection, OpenMP queries and the OpenMP team OpenBLAS's parallel work can run on (the baseline
build answers for the CPU; every build reports itself)."""
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


cdef extern from *:
    """
    /* OpenBLAS (0.3.27+) hands its parallel work to a callback when one is set (openblas_set_threads_callback_
       function): numjobs jobs that must run concurrently -- a level-3 job waits for the panels the others pack --
       each with a thread number, which OpenBLAS uses to index its per-thread state (a work buffer and a status
       word, arrays of MAX_THREADS entries).  fc_blas_threads runs them on an OpenMP team, the threads fastconv's
       kernels use, so a BLAS call leaves no spinning worker threads behind on the cores the next kernel needs.
       The thread numbers are taken from the top of OpenBLAS's arrays (fc_blas_top = its MAX_THREADS): the
       bottom entries belong to OpenBLAS's own workers, which still run the LU factorisation (getrf queues its
       jobs on them directly), possibly at the same time from another thread.  Calls are serialised (OpenBLAS's
       own thread server serialises them too).  Inside an OpenMP region, or wherever a team of numjobs threads is
       not guaranteed, the jobs run on POSIX threads started for the call. */
    #include <pthread.h>
    #include <stddef.h>
    #include <stdio.h>
    #include <stdlib.h>
    typedef void (*fc_dojob_t)(int thread_num, void *jobdata, int dojob_data);
    static pthread_mutex_t fc_blas_mutex = PTHREAD_MUTEX_INITIALIZER;
    static long long fc_blas_calls = 0;      /* parallel BLAS calls run here (under the mutex) */
    static int fc_blas_top = 0;              /* the smallest MAX_THREADS of the libraries using the callback */
    typedef struct { fc_dojob_t dojob; char *data; int thread_num; int dojob_data; } fc_blas_job;

    static void *fc_blas_job_thread(void *arg) {
        fc_blas_job *j = (fc_blas_job *)arg;
        j->dojob(j->thread_num, j->data, j->dojob_data);
        return NULL;
    }

    static int fc_blas_team_possible(int numjobs) {
    #if defined(_OPENMP)
        return !omp_in_parallel() && !omp_get_dynamic() && omp_get_active_level() < omp_get_max_active_levels()
               && numjobs <= omp_get_thread_limit();
    #else
        return 0;
    #endif
    }

    static void fc_blas_threads(int sync, fc_dojob_t dojob, int numjobs, size_t elsize, void *jobdata,
                                int dojob_data) {
        char *data = (char *)jobdata;
        int i, base, started = 0;
        (void)sync;                    /* every call completes before it returns */
        if (numjobs <= 0) return;
        pthread_mutex_lock(&fc_blas_mutex);
        /* thread numbers base .. base + numjobs - 1: OpenBLAS's own workers use the numbers below its thread
           count minus one, below base as long as that count is at most MAX_THREADS - numjobs + 1 */
        base = fc_blas_top >= 2 * numjobs ? fc_blas_top - numjobs : 0;
        fc_blas_calls++;
        if (fc_blas_team_possible(numjobs)) {
    #if defined(_OPENMP)
            #pragma omp parallel num_threads(numjobs)
            {
                int t = omp_get_thread_num();
                dojob(base + t, data + (size_t)t * elsize, dojob_data);
            }
    #endif
        } else {
            pthread_t th[numjobs];
            fc_blas_job jobs[numjobs];
            for (i = 0; i < numjobs; i++) {
                jobs[i].dojob = dojob; jobs[i].data = data + (size_t)i * elsize;
                jobs[i].thread_num = base + i; jobs[i].dojob_data = dojob_data;
            }
            for (i = 1; i < numjobs; i++) {
                if (pthread_create(&th[i], NULL, fc_blas_job_thread, &jobs[i]) != 0) break;
                started = i;
            }
            if (started != numjobs - 1) {  /* the jobs wait for each other: they cannot run one after another */
                fputs("fastconv: could not start threads for a BLAS call\\n", stderr);
                abort();
            }
            dojob(base, data, dojob_data);
            for (i = 1; i <= started; i++) pthread_join(th[i], NULL);
        }
        pthread_mutex_unlock(&fc_blas_mutex);
    }
    /* a fork() while another thread held the lock must not leave the child's BLAS calls locked for good */
    static void fc_blas_after_fork_child(void) { pthread_mutex_init(&fc_blas_mutex, NULL); }
    static size_t fc_blas_threads_address(int top) {
        static int atfork = 0;
        if (!atfork) atfork = pthread_atfork(NULL, NULL, fc_blas_after_fork_child) == 0;
        pthread_mutex_lock(&fc_blas_mutex);
        fc_blas_top = top;
        pthread_mutex_unlock(&fc_blas_mutex);
        return (size_t)&fc_blas_threads;
    }
    static int fc_blas_team_ok(int numjobs) { return fc_blas_team_possible(numjobs); }
    static long long fc_blas_call_count(void) {
        long long n;
        pthread_mutex_lock(&fc_blas_mutex);
        n = fc_blas_calls;
        pthread_mutex_unlock(&fc_blas_mutex);
        return n;
    }
    """
    size_t fc_blas_threads_address(int top) nogil
    int fc_blas_team_ok(int numjobs) nogil
    long long fc_blas_call_count() nogil


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


def blas_threads_callback(int max_threads):
    """The address of a function for OpenBLAS's ``openblas_set_threads_callback_function``: it runs OpenBLAS's
    parallel jobs on an OpenMP team (see fastconv._threads.share_blas_threads), numbered from the top of arrays of
    ``max_threads`` entries (the smallest MAX_THREADS of the libraries it serves)."""
    if max_threads < 1:
        raise ValueError("max_threads must be positive")
    return fc_blas_threads_address(max_threads)


def blas_team_possible(int numjobs):
    """Whether a BLAS call made here would run its ``numjobs`` jobs on an OpenMP team (False inside an OpenMP
    region, where they run on threads started for the call)."""
    return bool(fc_blas_team_ok(numjobs))


def blas_callback_calls():
    """How many parallel BLAS calls have run on fastconv's threads in this process."""
    return fc_blas_call_count()
