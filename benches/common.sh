# Sourced by the benchmark scripts: paths, the release build, the trees.
# Settings (environment):
#   DATAMIG_BENCH_DIR  trees and scratch space (default /tmp/datamig-bench;
#                      the first argument of a script overrides it)
#   TREES              which trees to run (default "small large")
#   RUNS_SMALL         hyperfine --runs on the small tree (default 5)
#   RUNS_LARGE         hyperfine --runs on the large tree (default 3)

bench_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$bench_here")"
bench_dir="${1:-${DATAMIG_BENCH_DIR:-/tmp/datamig-bench}}"
trees="${TREES:-small large}"
results="$bench_here/results"
jobs="$(nproc)"
mkdir -p "$results" "$bench_dir/work"

runs_for() {
    case "$1" in
        small) echo "${RUNS_SMALL:-5}" ;;
        *) echo "${RUNS_LARGE:-3}" ;;
    esac
}

for tool in hyperfine python3; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 2; }
done

echo "== building the release binary"
(cd "$repo" && cargo build --release --quiet)
# Benchmark a private copy: others may rebuild target/release while we run.
bin="$bench_dir/work/datamig"
cp "$repo/target/release/datamig" "$bin.new" && mv "$bin.new" "$bin"
build_rev="$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(cd "$repo" && git status --porcelain --untracked-files=no -- src Cargo.toml 2>/dev/null)" ]]; then
    build_rev="$build_rev+dirty"
fi
echo "   $("$bin" --version) at $build_rev, $jobs cores"

"$bench_here/make_trees.sh" "$bench_dir"

# The binaries a before/after script runs: `bins` lists "after" (this build)
# and, with BEFORE=path/to/datamig, "before" (a private copy of it in $1);
# `path` maps each to its binary.
binaries() {
    bins=(after)
    declare -gA path=([after]="$bin")
    if [[ -n "${BEFORE:-}" ]]; then
        cp "$BEFORE" "$1/datamig-before.new" && mv "$1/datamig-before.new" "$1/datamig-before"
        bins+=(before)
        path[before]="$1/datamig-before"
    fi
}
