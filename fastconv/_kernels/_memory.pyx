"""A caching allocator for NumPy arrays (a NEP 49 memory handler) for training steps.

A training step allocates the same activations and gradients every time, and frees them before the next step.
Large blocks come from ``mmap``, so every step touches fresh pages, and each first touch is a page fault (on a
virtual machine about 2 µs each: a LeNet-5 step at batch 64 took some 550 of them).  Inside :func:`caching`, NumPy
arrays of at least ``MIN_BYTES`` are taken from, and returned to, a small cache of freed blocks of exactly the
same size (at most ``SLOTS`` blocks and the limit of :func:`set_limit`, ``DEFAULT_LIMIT`` at first); everything
else goes to NumPy's own allocator.  The handler stays with each array, so a cached array freed later anywhere
still returns its block to the cache.
"""
cimport numpy as cnp

cnp.import_array()

cdef extern from *:
    """
    #include <pthread.h>
    #include <stdlib.h>
    #include <string.h>
    #define FC_SLOTS 64
    #define FC_MIN_BYTES ((size_t)256 * 1024)
    #define FC_DEFAULT_LIMIT ((size_t)256 << 20)
    typedef struct { size_t size; void *ptr; } fc_slot;
    static fc_slot fc_slots[FC_SLOTS];
    static size_t fc_cached = 0, fc_limit = FC_DEFAULT_LIMIT;
    static long long fc_hits = 0, fc_misses = 0;
    static pthread_mutex_t fc_mem_mutex = PTHREAD_MUTEX_INITIALIZER;
    static PyDataMemAllocator fc_numpy;          /* NumPy's default allocator: everything not cached */

    static void *fc_take(size_t size) {
        void *p = NULL;
        int i;
        if (size < FC_MIN_BYTES) return NULL;
        pthread_mutex_lock(&fc_mem_mutex);
        for (i = 0; i < FC_SLOTS; i++) {
            if (fc_slots[i].ptr != NULL && fc_slots[i].size == size) {
                p = fc_slots[i].ptr;
                fc_slots[i].ptr = NULL;
                fc_cached -= size;
                break;
            }
        }
        if (p != NULL) fc_hits++; else fc_misses++;
        pthread_mutex_unlock(&fc_mem_mutex);
        return p;
    }
    static void *fc_malloc(void *ctx, size_t size) {
        void *p = fc_take(size);
        return p != NULL ? p : fc_numpy.malloc(fc_numpy.ctx, size);
    }
    static void *fc_calloc(void *ctx, size_t nelem, size_t elsize) {
        void *p;
        if (elsize != 0 && nelem > ((size_t)-1) / elsize) return NULL;
        p = fc_take(nelem * elsize);
        if (p == NULL) return fc_numpy.calloc(fc_numpy.ctx, nelem, elsize);
        memset(p, 0, nelem * elsize);
        return p;
    }
    static void *fc_realloc(void *ctx, void *ptr, size_t size) {
        return fc_numpy.realloc(fc_numpy.ctx, ptr, size);
    }
    static void fc_free(void *ctx, void *ptr, size_t size) {
        int i;
        if (ptr != NULL && size >= FC_MIN_BYTES) {
            pthread_mutex_lock(&fc_mem_mutex);
            if (fc_cached + size <= fc_limit) {
                for (i = 0; i < FC_SLOTS; i++) {
                    if (fc_slots[i].ptr == NULL) {
                        fc_slots[i].ptr = ptr;
                        fc_slots[i].size = size;
                        fc_cached += size;
                        ptr = NULL;
                        break;
                    }
                }
            }
            pthread_mutex_unlock(&fc_mem_mutex);
        }
        if (ptr != NULL) fc_numpy.free(fc_numpy.ctx, ptr, size);
    }
    static PyDataMem_Handler fc_handler = {"fastconv_caching", 1, {NULL, fc_malloc, fc_calloc, fc_realloc, fc_free}};

    static void fc_set_limit(size_t limit) {
        int i;
        pthread_mutex_lock(&fc_mem_mutex);
        fc_limit = limit;
        for (i = 0; i < FC_SLOTS && fc_cached > fc_limit; i++) {
            if (fc_slots[i].ptr != NULL) {
                fc_numpy.free(fc_numpy.ctx, fc_slots[i].ptr, fc_slots[i].size);
                fc_cached -= fc_slots[i].size;
                fc_slots[i].ptr = NULL;
            }
        }
        pthread_mutex_unlock(&fc_mem_mutex);
    }
    static int fc_init(PyObject *numpy_handler) {
        PyDataMem_Handler *h = (PyDataMem_Handler *)PyCapsule_GetPointer(numpy_handler, "mem_handler");
        if (h == NULL) return -1;
        fc_numpy = h->allocator;
        return 0;
    }
    static PyObject *fc_capsule(void) { return PyCapsule_New(&fc_handler, "mem_handler", NULL); }
    /* a fork() while another thread held the lock must not leave the child's allocator locked for good */
    static void fc_mem_after_fork_child(void) { pthread_mutex_init(&fc_mem_mutex, NULL); }
    static int fc_mem_atfork(void) { return pthread_atfork(NULL, NULL, fc_mem_after_fork_child); }
    static void fc_stats(size_t *cached, size_t *limit, long long *hits, long long *misses) {
        pthread_mutex_lock(&fc_mem_mutex);
        *cached = fc_cached; *limit = fc_limit; *hits = fc_hits; *misses = fc_misses;
        pthread_mutex_unlock(&fc_mem_mutex);
    }
    """
    size_t FC_MIN_BYTES
    size_t FC_DEFAULT_LIMIT
    int FC_SLOTS
    int fc_init(object numpy_handler) except -1
    object fc_capsule()
    int fc_mem_atfork()
    void fc_set_limit(size_t limit) nogil
    void fc_stats(size_t *cached, size_t *limit, long long *hits, long long *misses) nogil

cdef extern from "numpy/arrayobject.h":
    object PyDataMem_GetHandler()

MIN_BYTES = FC_MIN_BYTES
SLOTS = FC_SLOTS
DEFAULT_LIMIT = FC_DEFAULT_LIMIT

# NumPy's default allocator serves every request the cache does not (read once, at import, while it is in use).
_default = PyDataMem_GetHandler()
fc_init(_default)
_handler = fc_capsule()
fc_mem_atfork()


cdef class caching:
    """``with caching():`` NumPy arrays allocated in the block use the cache (in this thread and context only)."""
    cdef object _previous

    def __enter__(self):
        self._previous = cnp.PyDataMem_SetHandler(_handler)
        return self

    def __exit__(self, *exc):
        cnp.PyDataMem_SetHandler(self._previous)
        self._previous = None
        return False


def set_limit(size_t limit):
    """Keep at most ``limit`` bytes of freed blocks (0 empties the cache and turns it off)."""
    fc_set_limit(limit)


def stats():
    """``(cached bytes, limit, hits, misses)``."""
    cdef size_t cached, limit
    cdef long long hits, misses
    fc_stats(&cached, &limit, &hits, &misses)
    return cached, limit, hits, misses
