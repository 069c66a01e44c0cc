#!/usr/bin/env bash
# Inventory benchmark: `datamig inventory` against find|xargs sha256sum and
# hashdeep, and an incremental `--since` run against the full run, on both
# synthetic trees; plus datamig's peak RSS. See benches/README.md.
# Usage: benches/inventory.sh [BENCH_DIR]   (settings: see benches/common.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

command -v hashdeep >/dev/null || { echo "hashdeep is required" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is required (apt-get install -y time)" >&2; exit 2; }

work="$bench_dir/work/inventory"
mkdir -p "$work"
declare -A rss

for tree in $trees; do
    root="$bench_dir/$tree"
    runs="$(runs_for "$tree")"
    base="$work/$tree-base.jsonl"
    echo "== inventory: $tree ($runs runs)"
    # The --since baseline: a full manifest of the unchanged tree.
    "$bin" --root "$root" inventory -q -o "$base" >/dev/null

    hyperfine --warmup 1 --runs "$runs" --style basic \
        --export-json "$results/inventory-$tree.json" \
        -n datamig \
        "'$bin' --root '$root' inventory -q -o '$work/m.jsonl'" \
        -n xargs-sha256sum \
        "cd '$root' && find . -type f -print0 | xargs -0 -P$jobs sha256sum > /dev/null" \
        -n hashdeep \
        "cd '$root' && hashdeep -r -c sha256 -j$jobs . > /dev/null" \
        -n datamig-since \
        "'$bin' --root '$root' inventory -q --since '$base' -o '$work/m2.jsonl'"

    # Peak memory of a full inventory (warm cache, like the timed runs).
    /usr/bin/time -v "$bin" --root "$root" inventory -q -o "$work/m.jsonl" \
        >/dev/null 2>"$work/time-$tree.txt"
    rss[$tree]="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time-$tree.txt")"
done

rss_json="{"
for tree in $trees; do rss_json+="\"$tree\": ${rss[$tree]},"; done
rss_json="${rss_json%,}}"

python3 - "$results" "$build_rev" "$jobs" "$rss_json" $trees <<'PY'
import json, sys, datetime
results, rev, jobs, rss = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
trees = sys.argv[5:]
rows = {}
for t in trees:
    with open(f"{results}/inventory-{t}.json") as f:
        med = {r["command"]: r["median"] for r in json.load(f)["results"]}
    rows[t] = {
        "median_s": med,
        "datamig/xargs": med["datamig"] / med["xargs-sha256sum"],
        "hashdeep/datamig": med["hashdeep"] / med["datamig"],
        "full/since": med["datamig"] / med["datamig-since"],
        "peak_rss_kib": rss[t],
    }
goal = lambda ok: "ok" if ok else "MISSED"
print()
print(f"Inventory medians (s), datamig {rev}, {jobs} cores")
print(f"{'tree':<6} {'datamig':>8} {'xargs':>8} {'hashdeep':>9} {'--since':>8}"
      f" | {'datamig/xargs':>13} {'hashdeep/datamig':>16} {'full/since':>10} | {'peak RSS':>9}")
for t, r in rows.items():
    m = r["median_s"]
    print(f"{t:<6} {m['datamig']:8.3f} {m['xargs-sha256sum']:8.3f} {m['hashdeep']:9.3f} {m['datamig-since']:8.3f}"
          f" | {r['datamig/xargs']:13.2f} {r['hashdeep/datamig']:16.2f} {r['full/since']:10.1f}"
          f" | {r['peak_rss_kib'] / 1024:6.0f} MiB")
print("goals: datamig/xargs <= 1.00, hashdeep/datamig >= 1.5, full/since >= 10")
for t, r in rows.items():
    print(f"  {t:<6} xargs {goal(r['datamig/xargs'] <= 1.0)}, hashdeep {goal(r['hashdeep/datamig'] >= 1.5)},"
          f" since {goal(r['full/since'] >= 10)}")
with open(f"{results}/inventory-summary.json", "w") as f:
    json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"),
               "datamig": rev, "cores": jobs, "trees": rows}, f, indent=2)
    f.write("\n")
PY
