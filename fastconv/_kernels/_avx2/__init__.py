"""AVX2+FMA builds of the kernel modules (same sources as the parent package, other compiler flags)."""
