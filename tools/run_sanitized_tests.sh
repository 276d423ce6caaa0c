#!/usr/bin/env bash
# Build fastconv's kernels with Cython bounds/wraparound/initialisation checks and AddressSanitizer in a
# throw-away clone, then run the test suite (or a part of it) on that build.
#
#   tools/run_sanitized_tests.sh                      reduced suite (reliability tests + kernel module tests)
#   tools/run_sanitized_tests.sh --full               every test file
#   tools/run_sanitized_tests.sh --uncommitted        also copy modified/untracked files of the working tree
#   tools/run_sanitized_tests.sh --keep               keep the build directory (path printed at the end)
#   tools/run_sanitized_tests.sh -- tests/test_x.py -k foo    explicit pytest arguments
#
# Environment: FASTCONV_SANITIZE (default "address"; "address,undefined" adds UBSan), FASTCONV_SAN_DIR (build dir,
# default a fresh mktemp -d under $TMPDIR), FASTCONV_HYPOTHESIS_SCALE and FASTCONV_FUZZ_SCALE (default 0.25: a
# quarter of the property examples and fuzzer problems), CC (compiler whose libasan is preloaded, default gcc),
# PYTHON (default python3).
#
# The in-place build of the repository is never touched: the clone gets its own build/ and .so files.  A Python
# that was not itself built with ASan needs the ASan runtime preloaded (LD_PRELOAD) so that it is the first
# library in the process (and libstdc++ with it, for C++ extensions that throw); leak detection is off (CPython
# keeps memory until exit by design), and allocator_may_return_null=1 makes impossible requests return NULL, so
# the kernels raise MemoryError exactly as in a normal build instead of ASan aborting on "allocation size too
# big".  Sanitizer reports go to files in the build directory (pytest captures stderr) and fail the run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(git -C "$here/.." rev-parse --show-toplevel)"
python="${PYTHON:-python3}"
cc="${CC:-gcc}"
sanitize="${FASTCONV_SANITIZE:-address}"
full=0
keep=0
uncommitted=0
pytest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --full) full=1 ;;
        --keep) keep=1 ;;
        --uncommitted) uncommitted=1 ;;
        --) shift; pytest_args=("$@"); break ;;
        -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

work="${FASTCONV_SAN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/fastconv-san.XXXXXX")}"
cleanup() { if [ "$keep" = 0 ] && [ -z "${FASTCONV_SAN_DIR:-}" ]; then rm -rf "$work"; fi; }
trap cleanup EXIT

src="$work/src"
rm -rf "$src"
git clone --quiet --no-hardlinks "$repo" "$src"
if [ "$uncommitted" = 1 ]; then
    # modified and untracked (not ignored) files of the working tree, as they are now
    (cd "$repo" && git ls-files -z --modified --others --exclude-standard) |
        (cd "$repo" && xargs -0 -r cp --parents -t "$src" 2>/dev/null || true)
fi

echo "== building with FASTCONV_SANITIZE=$sanitize in $src"
start=$(date +%s)
(cd "$src" && FASTCONV_SANITIZE="$sanitize" "$python" setup.py build_ext --inplace >"$work/build.log" 2>&1) || {
    tail -n 40 "$work/build.log"; echo "build failed (log: $work/build.log)" >&2; keep=1; exit 1; }
echo "   built in $(( $(date +%s) - start )) s"
(cd "$src" && "$python" - <<'EOF'
c = {}
exec(open("fastconv/_kernels/_build_config.py").read(), c)   # not imported: the modules need the ASan runtime
assert c["DEBUG"] and c["SANITIZE"] and not c["AVX2_VARIANT"], c
print("   build_config: DEBUG=%(DEBUG)s SANITIZE=%(SANITIZE)s OPENMP=%(OPENMP)s AVX2_VARIANT=%(AVX2_VARIANT)s" % c)
EOF
)

runtime=""
case "$sanitize" in
    # libstdc++ right after the ASan runtime: C++ extensions loaded later (matplotlib's ft2font) throw exceptions,
    # and ASan's __cxa_throw interceptor needs the real one resolved at start-up
    *address*) runtime="$("$cc" -print-file-name=libasan.so):$("$cc" -print-file-name=libstdc++.so)" ;;
esac
case "$sanitize" in
    *undefined*) [ -n "$runtime" ] && runtime="$runtime:"
                 runtime="$runtime$("$cc" -print-file-name=libubsan.so)" ;;
esac
export LD_PRELOAD="${runtime}${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=0:exitcode=86:strict_init_order=1:detect_stack_use_after_return=0:log_path=$work/asan}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:log_path=$work/asan}"
export FASTCONV_HYPOTHESIS_SCALE="${FASTCONV_HYPOTHESIS_SCALE:-0.25}"
export FASTCONV_FUZZ_SCALE="${FASTCONV_FUZZ_SCALE:-0.25}"
export PYTHONPATH="$src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONFAULTHANDLER=1

if [ ${#pytest_args[@]} -eq 0 ]; then
    if [ "$full" = 1 ]; then
        pytest_args=(tests)
    else
        pytest_args=()
        for f in test_bad_inputs test_regressions test_properties test_determinism test_concurrency test_leaks \
                 test_conv test_conv_validation test_conv_transpose test_grad test_toeplitz test_fft \
                 test_pooling test_filters test_nonfinite test_edge_semantics; do
            [ -f "$src/tests/$f.py" ] && pytest_args+=("tests/$f.py")
        done
    fi
fi

echo "== pytest ${pytest_args[*]}  (LD_PRELOAD=$LD_PRELOAD)"
start=$(date +%s)
set +e
(cd "$src" && "$python" -m pytest -q -p no:cacheprovider "${pytest_args[@]}")
status=$?
set -e
echo "== sanitized run finished with exit status $status in $(( $(date +%s) - start )) s"
# pytest captures stderr, so reports go to files; "failed to allocate" warnings are the MemoryError tests
if grep -l -E "ERROR: AddressSanitizer|CHECK failed|runtime error:" "$work"/asan.* >/dev/null 2>&1; then
    cat "$work"/asan.* >&2
    echo "AddressSanitizer reported an error (above; files $work/asan.*)" >&2
    keep=1
    [ "$status" = 0 ] && status=86
elif ls "$work"/asan.* >/dev/null 2>&1; then
    echo "   sanitizer warnings: $(cat "$work"/asan.* | grep -c WARNING) (allocations refused on purpose)"
fi
if [ "$keep" = 1 ]; then
    echo "build kept in $work"
fi
exit "$status"
