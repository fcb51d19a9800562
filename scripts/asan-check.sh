#!/usr/bin/env bash
# The C part (kpi_excel/_speedups.c) under AddressSanitizer and UndefinedBehaviorSanitizer:
# builds it with both into a copy of the working tree and runs the tests that drive it
# with real and hostile workbooks. Needs gcc and its libasan/libubsan (Debian: gcc).
# A memory error stops the run with the sanitizer's report.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$repo" && git ls-files -z | xargs -0 cp --parents -t "$work")
inc="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
ext="$(python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
rm -f "$work"/kpi_excel/_speedups*.so
gcc -shared -fPIC -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
  -I"$inc" "$work/kpi_excel/_speedups.c" -o "$work/kpi_excel/_speedups$ext"
cd "$work"
# Python's own allocator hides overruns of small objects from the sanitizer: use malloc
PYTHONPATH="$work" PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
  python -m pytest -q -x -p no:cacheprovider \
  tests/test_speedups.py tests/test_fastread.py tests/test_hostile.py tests/test_gate_memo.py \
  tests/test_spool.py tests/test_ledger.py tests/test_zipdir.py "$@"
