# Shared Cython declarations for fastconv's kernels.
ctypedef fused float_t:
    float
    double
