#!/usr/bin/env bash
# Before/after benchmark for the handle-based walk, archive and restore
# (issue 10): the current build and an earlier datamig binary (BEFORE), each
# against the standard tool, on the 50,000-file small tree. Runs are
# interleaved (one of each command per round) so machine noise hits all of
# them alike; the summary quotes medians.
# Usage: BEFORE=/path/to/old/datamig benches/handles.sh [BENCH_DIR]
#   ROUNDS   rounds of interleaved runs (default 7; one extra warm-up round)
#   AFTER    benchmark this binary as "after" instead of this checkout's build
set -euo pipefail
export TREES=small
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

before="${BEFORE:?set BEFORE to the datamig binary built before the change}"
if [[ -n "${AFTER:-}" ]]; then
    cp "$AFTER" "$bin.new" && mv "$bin.new" "$bin"
    build_rev="$("$bin" --version) from $AFTER"
fi
[[ -x "$before" ]] || { echo "BEFORE=$before is not executable" >&2; exit 2; }
for tool in zstd tar sha256sum; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 2; }
done
rounds="${ROUNDS:-7}"
old="$bench_dir/work/datamig-before"
cp "$before" "$old.new" && mv "$old.new" "$old"
root="$bench_dir"
tree=small
work="$bench_dir/work/handles"
out=/dev/shm/datamig-bench-handles
mkdir -p "$work"
date=20251225

# An archive of the tree for the restore runs, written by the old binary so
# both restore the very same bytes (and old archives must keep restoring).
arch="$work/ref"
rm -rf "$arch" && mkdir -p "$arch"
"$old" --root "$root" archive "$tree" --dest "$arch" --date "$date" --no-verify -q >/dev/null
a="$(ls "$arch"/*.tar.zst)"

declare -A cmd
cmd[inventory-after]="'$bin' --root '$root/$tree' inventory -q -o '$work/m.jsonl'"
cmd[inventory-before]="'$old' --root '$root/$tree' inventory -q -o '$work/m.jsonl'"
cmd[find-xargs-sha256sum]="cd '$root/$tree' && find . -type f -print0 | xargs -0 -P$jobs sha256sum >/dev/null"
cmd[archive-after]="rm -rf '$work/d' && '$bin' --root '$root' archive $tree --dest '$work/d' --date $date --no-verify -q"
cmd[archive-before]="rm -rf '$work/d' && '$old' --root '$root' archive $tree --dest '$work/d' --date $date --no-verify -q"
cmd[tar-zstd]="tar -C '$root' -cf - $tree | zstd -T0 -3 -q -o '$work/t.tar.zst' -f"
cmd[restore-after]="rm -rf '$out' && mkdir '$out' && '$bin' restore '$a' --to '$out' -q"
cmd[restore-before]="rm -rf '$out' && mkdir '$out' && '$old' restore '$a' --to '$out' -q"
cmd[tar-x-sync]="rm -rf '$out' && mkdir '$out' && tar --zstd -xf '$a' -C '$out' && sync -f '$out'"
order=(inventory-after inventory-before find-xargs-sha256sum
       archive-after archive-before tar-zstd
       restore-after restore-before tar-x-sync)

times="$work/times.tsv"
: >"$times"
for ((r = 0; r <= rounds; r++)); do
    echo "== round $r of $rounds$( ((r == 0)) && echo ' (warm-up, not counted)')"
    for name in "${order[@]}"; do
        t0=$(date +%s%N)
        # datamig exits 1 when it lists problems; only 2 (could not run) fails.
        bash -c "${cmd[$name]}" >/dev/null || (($? == 1)) || { echo "$name failed" >&2; exit 2; }
        t1=$(date +%s%N)
        ((r == 0)) || printf '%s\t%s\n' "$name" "$(((t1 - t0) / 1000))" >>"$times"
    done
done
rm -rf "$out" "$work/d" "$work/t.tar.zst"

python3 - "$times" "$results/handles-summary.json" "$build_rev" "$jobs" <<'PY'
import json, statistics, sys, datetime
times, dest, rev, jobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
runs = {}
for line in open(times):
    name, us = line.split("\t")
    runs.setdefault(name, []).append(int(us) / 1e6)
med = {k: statistics.median(v) for k, v in runs.items()}
rows = [("inventory", "find-xargs-sha256sum"), ("archive", "tar-zstd"), ("restore", "tar-x-sync")]
print(f"\nMedians of {len(next(iter(runs.values())))} interleaved rounds (s), small tree, datamig {rev}, {jobs} cores")
print(f"{'verb':<10} {'before':>8} {'after':>8} {'standard':>9} | {'after/before':>12} {'before/std':>10} {'after/std':>9}")
summary = {}
for verb, std in rows:
    b, a, s = med[f"{verb}-before"], med[f"{verb}-after"], med[std]
    summary[verb] = {"before_s": b, "after_s": a, std + "_s": s,
                     "after/before": a / b, "before/std": b / s, "after/std": a / s}
    print(f"{verb:<10} {b:8.3f} {a:8.3f} {s:9.3f} | {a / b:12.2f} {b / s:10.2f} {a / s:9.2f}   ({std})")
with open(dest, "w") as f:
    json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "datamig": rev,
               "cores": jobs, "runs_s": runs, "median_s": med, "verbs": summary}, f, indent=2)
    f.write("\n")
PY
