#!/usr/bin/env bash
# Issue 15 items 1 and 2, interleaved (one run of each command per round, so
# machine noise hits all alike), with wall time AND CPU time (user + sys) of
# every run, which a shared machine disturbs far less than wall time:
#   inventory of the data-root tree (c)  vs  find -print0 | xargs -0 -P"$(nproc)" cat
#   inventory --since of the small tree, unchanged  vs  find -printf '%s %T@ %i %C@\n'
# Also checks the outputs: the --since manifest is byte-identical to a full
# inventory's, and -j1 and -jN manifests of (c) are identical.
# Usage: [BEFORE=old/datamig] [ROUNDS=9] benches/perf15.sh [BENCH_DIR]
set -euo pipefail
export TREES="small root"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is required (apt-get install -y time)" >&2; exit 2; }
rounds="${ROUNDS:-9}"
work="$bench_dir/work/perf15"
mkdir -p "$work"
root="$bench_dir/root"
small="$bench_dir/small"

declare -A cmd
names=()
add() { names+=("$1"); cmd[$1]="$2"; }
binaries "$work"
base="$work/small-base.jsonl"
"$bin" --root "$small" inventory -q -o "$base" >/dev/null
for b in "${bins[@]}"; do
    add "inventory-root-$b" "'${path[$b]}' --root '$root' inventory -q -o '$work/m-$b.jsonl'"
done
add xargs-cat-root "cd '$root' && find . -type f -print0 | xargs -0 -P$jobs cat >/dev/null"
for b in "${bins[@]}"; do
    add "since-small-$b" "'${path[$b]}' --root '$small' inventory -q --since '$base' -o '$work/s-$b.jsonl'"
done
add find-printf-small "cd '$small' && find . -printf '%s %T@ %i %C@\n' >/dev/null"

times="$work/times.tsv"
: >"$times"
for ((r = 0; r <= rounds; r++)); do
    echo "== round $r of $rounds$( ((r == 0)) && echo ' (warm-up, not counted)')"
    for name in "${names[@]}"; do
        /usr/bin/time -o "$work/t.txt" -f '%e %U %S %M' bash -c "${cmd[$name]}" >/dev/null
        ((r == 0)) || printf '%s\t%s\n' "$name" "$(cat "$work/t.txt")" >>"$times"
    done
done

echo "== outputs"
"$bin" --root "$small" inventory -q -o "$work/full.jsonl" >/dev/null
# The header records the creation time (seconds), and the trailer hashes it:
# compare the entry lines.
body() { sed '1d;$d' "$1"; }
cmp <(body "$work/full.jsonl") <(body "$work/s-after.jsonl") && echo "--since manifest identical to a full inventory's"
"$bin" --root "$root" inventory -q -j1 -o "$work/j1.jsonl" >/dev/null
"$bin" --root "$root" inventory -q -j"$jobs" -o "$work/jn.jsonl" >/dev/null
cmp <(body "$work/j1.jsonl") <(body "$work/jn.jsonl") && echo "-j1 and -j$jobs manifests of the data root identical"

python3 - "$times" "$results/perf15-summary.json" "$build_rev" "$jobs" "$(cat /proc/loadavg)" <<'PY'
import json, statistics, sys, datetime
times, dest, rev, jobs, load = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
runs = {}
for line in open(times):
    name, rest = line.rstrip("\n").split("\t")
    wall, user, sys_, rss = rest.split()
    runs.setdefault(name, []).append({"wall": float(wall), "cpu": float(user) + float(sys_),
                                      "rss_kib": int(rss)})
med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall", "cpu", "rss_kib")}
       for k, v in runs.items()}
print(f"\nMedians of {len(next(iter(runs.values())))} interleaved rounds, datamig {rev}, {jobs} cores, load {load}")
print(f"{'command':<22} {'wall s':>8} {'cpu s':>8} {'RSS MiB':>8}")
for k, m in med.items():
    print(f"{k:<22} {m['wall']:8.3f} {m['cpu']:8.3f} {m['rss_kib'] / 1024:8.1f}")
ratios = {}
for job, std, goal in [("inventory-root", "xargs-cat-root", 1.2), ("since-small", "find-printf-small", 1.0)]:
    for b in ("after", "before"):
        k = f"{job}-{b}"
        if k in med:
            w = med[k]["wall"] / med[std]["wall"]
            ratios[k] = {"wall/std": w, "cpu/std": med[k]["cpu"] / med[std]["cpu"], "goal": goal}
            print(f"{k:<22} / {std:<18} wall {w:5.2f} (goal <= {goal}: {'ok' if w <= goal else 'MISSED'}),"
                  f" cpu {ratios[k]['cpu/std']:5.2f}")
with open(dest, "w") as f:
    json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "datamig": rev,
               "cores": jobs, "load": load, "runs": runs, "median": med, "ratios": ratios}, f, indent=2)
    f.write("\n")
PY
