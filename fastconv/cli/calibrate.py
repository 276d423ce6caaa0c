"""Time small probe convolutions with every algorithm and op (about two seconds), fit the cost models of
algorithm='auto' and the filters to this machine, and store the result for this CPU, SIMD level, thread count and
fastconv version in the cache directory (FASTCONV_CACHE_DIR overrides it).

Later processes on this machine load it; without a stored calibration the first ``auto`` choice of a process
measures it.  See ``fastconv/_calibrate.py``.
"""

__all__ = ["HELP", "add_arguments", "main"]

HELP = "measure the cost models on this machine and store them in the cache directory"


def add_arguments(p):
    p.add_argument("--threads", type=int, default=None, help="thread count to calibrate for (default: current)")
    p.add_argument("--no-save", action="store_true", help="measure and print only")
    p.add_argument("--quiet", action="store_true", help="no output")


def main(args):
    from .. import _calibrate, _threads
    if args.threads is not None and args.threads < 1:
        raise ValueError("--threads must be at least 1, got %d" % args.threads)
    threads = _threads.effective_threads(args.threads)
    data = _calibrate.calibrate(threads, progress=not args.quiet, save=not args.no_save)
    if args.quiet:
        return 0
    key = data["key"]
    print("calibration for %s, SIMD %s, %d threads, fastconv %s" % (key["cpu"], key["simd"], threads,
                                                                  key["version"]))
    kinds = {name.rsplit("/", 1)[0] for name in data["fits"] if not name.endswith("/")}
    for name, (scale, over) in sorted(data["fits"].items()):
        if not (name.endswith("/") and name[:-1] in kinds):     # the pooled fit of an op with several kinds
            print("  %-32s time = %.3g x model + %.3g ms" % (name.rstrip("/"), scale, over * 1e3))
    if not args.no_save:
        print("stored in %s" % _calibrate.cache_path("calibration", key))
    return 0
