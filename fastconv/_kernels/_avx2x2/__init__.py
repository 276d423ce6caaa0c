"""The 64-byte vector code path compiled for AVX2 (each vector a pair of YMM registers): a test build that runs
the AVX-512 build's kernels, block sizes included, on any AVX2 CPU.  Only modules with explicit vector code."""
