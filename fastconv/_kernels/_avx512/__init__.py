"""AVX-512 builds of the kernel modules (same sources as the parent package, 64-byte vectors)."""
