#!/usr/bin/env bash
# Issue 15 item 4, interleaved (one run of each command per round, the order
# rotated each round), wall and CPU time of every run: `datamig archive
# --no-verify` of the small tree (50,000 files) against `tar -cf - . | zstd
# -T0 -3`, on a quiet machine and then with `stress-ng --cpu 1` running, in the
# same run. Informational rows: tar | zstd followed by `sync` (datamig fsyncs
# its archive and sidecars), and tar | zstd with SHA-256 of its input and its
# output (`tee >(openssl dgst -sha256)`, SHA-NI like datamig's sha2) — the work
# datamig must do on top of tar | zstd (the manifest's per-file hashes and the
# archive's .sha256 sidecar): its CPU time is the floor for datamig's.
# Usage: [BEFORE=old/datamig] [ROUNDS=7] benches/archive15.sh [BENCH_DIR]
set -euo pipefail
export TREES="small"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
for t in /usr/bin/time stress-ng zstd openssl; do
    command -v "$t" >/dev/null || { echo "$t is required (apt-get install -y time stress-ng zstd)" >&2; exit 2; }
done
rounds="${ROUNDS:-7}"
work="$bench_dir/work/archive15"
mkdir -p "$work"
tree="$bench_dir/small"
date=20251225

declare -A cmd
names=()
add() { names+=("$1"); cmd[$1]="$2"; }
binaries "$work"
for b in "${bins[@]}"; do
    add "datamig-$b" "rm -rf '$work/d-$b' && '${path[$b]}' --root '$bench_dir' archive small --dest '$work/d-$b' --date $date --no-verify -q"
done
add tar-zstd "rm -f '$work/t.tar.zst' && tar -C '$tree' -cf - . | zstd -T0 -3 -q > '$work/t.tar.zst'"
add tar-zstd-sync "rm -f '$work/t.tar.zst' && tar -C '$tree' -cf - . | zstd -T0 -3 -q > '$work/t.tar.zst' && sync '$work/t.tar.zst'"
add tar-zstd-sha "rm -f '$work/t.tar.zst' && tar -C '$tree' -cf - . | tee >(openssl dgst -sha256 >/dev/null) | zstd -T0 -3 -q | tee >(openssl dgst -sha256 >/dev/null) > '$work/t.tar.zst'"

times="$work/times.tsv"
: >"$times"
stress_pid=""
stop_stress() { [[ -z "$stress_pid" ]] || { kill "$stress_pid" 2>/dev/null; wait "$stress_pid" 2>/dev/null || true; stress_pid=""; }; }
trap stop_stress EXIT
for load in quiet loaded; do
    if [[ "$load" == loaded ]]; then
        stress-ng --cpu 1 --timeout 0 --quiet &
        stress_pid=$!
        sleep 1
    fi
    for ((r = 0; r <= rounds; r++)); do
        echo "== $load, round $r of $rounds$( ((r == 0)) && echo ' (warm-up, not counted)')"
        for ((i = 0; i < ${#names[@]}; i++)); do
            name="${names[$(((i + r) % ${#names[@]}))]}"
            /usr/bin/time -o "$work/t.txt" -f '%e %U %S %M' bash -c "${cmd[$name]}" >/dev/null
            ((r == 0)) || printf '%s\t%s\t%s\n' "$load" "$name" "$(cat "$work/t.txt")" >>"$times"
        done
    done
    stop_stress
done

dm="$work/d-after/small-$date.tar.zst"
sizes="$(stat -c %s "$dm") $(stat -c %s "$work/t.tar.zst")"
echo "== sizes: datamig $dm, tar | zstd: $sizes"
python3 - "$times" "$results/archive15-summary.json" "$build_rev" "$jobs" "$sizes" <<'PY'
import json, statistics, sys, datetime
times, dest, rev, jobs, sizes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
dm_size, tar_size = map(int, sizes.split())
runs = {}
for line in open(times):
    load, name, rest = line.rstrip("\n").split("\t")
    wall, user, sys_, rss = rest.split()
    runs.setdefault(load, {}).setdefault(name, []).append(
        {"wall": float(wall), "cpu": float(user) + float(sys_), "rss_kib": int(rss)})
med = {load: {k: {m: statistics.median(r[m] for r in v) for m in ("wall", "cpu", "rss_kib")}
              for k, v in by.items()} for load, by in runs.items()}
ratios = {}
for load, goal in (("quiet", 1.05), ("loaded", 1.2)):
    n = len(next(iter(runs[load].values())))
    print(f"\n{load}: medians of {n} interleaved rounds, datamig {rev}, {jobs} cores")
    print(f"{'command':<16} {'wall s':>8} {'cpu s':>8} {'RSS MiB':>8}")
    for k, m in med[load].items():
        print(f"{k:<16} {m['wall']:8.3f} {m['cpu']:8.3f} {m['rss_kib'] / 1024:8.1f}")
    std = med[load]["tar-zstd"]
    for k in [k for k in med[load] if k.startswith("datamig-")] + ["tar-zstd-sync", "tar-zstd-sha"]:
        w, c = med[load][k]["wall"] / std["wall"], med[load][k]["cpu"] / std["cpu"]
        ratios[f"{load} {k}"] = {"wall/tar-zstd": w, "cpu/tar-zstd": c}
        mark = f" (goal <= {goal}: {'ok' if w <= goal else 'MISSED'})" if k.startswith("datamig-") else ""
        print(f"{k:<16} / tar-zstd  wall {w:5.2f}{mark}, cpu {c:5.2f}")
size = dm_size / tar_size
print(f"\nsize datamig / tar | zstd: {size:.4f} (goal <= 1.03: {'ok' if size <= 1.03 else 'MISSED'})")
with open(dest, "w") as f:
    json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "datamig": rev,
               "cores": jobs, "runs": runs, "median": med, "ratios": ratios,
               "bytes": {"datamig": dm_size, "tar-zstd": tar_size, "ratio": size}}, f, indent=2)
    f.write("\n")
PY
