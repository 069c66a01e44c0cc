#!/usr/bin/env bash
# Archive benchmark: `datamig archive --no-verify` against tar | zstd -T0 -3
# (time and size) and against `restic backup` into a fresh repository; and
# datamig's read-back verify against zstd -dc | tar -x | sha256sum -c.
# See benches/README.md. Usage: benches/archive.sh [BENCH_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for tool in zstd tar restic sha256sum; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 2; }
done

work="$bench_dir/work/archive"
mkdir -p "$work"
date=20250101
# restic 0.14 has no --insecure-no-password; a fixed password is fine here.
export RESTIC_PASSWORD=datamig-bench
restic_version="$(restic version | awk '{print $2}')"

# Does this build have `datamig verify ARCHIVE`? (Not yet at the time of
# writing: then the verify pass is `archive` with verify minus without.)
verify_cmd=""
if "$bin" verify --help 2>/dev/null | grep -qi 'archive'; then
    verify_cmd=verify
fi

# Where the reference verify extracts. tmpfs by default: on ext4, re-creating
# 50,000 files right after `rm -rf` of the previous run's copies hits the
# inode allocator's recently_deleted() scan (~0.7 ms per create here), which
# times the filesystem, not the verify. EXTRACT_DIR overrides.
if [[ -z "${EXTRACT_DIR:-}" && -d /dev/shm && -w /dev/shm ]]; then
    extract_root=/dev/shm/datamig-bench-extract
else
    extract_root="${EXTRACT_DIR:-$work}"
fi
mkdir -p "$extract_root"

declare -A sizes
for tree in $trees; do
    src="$bench_dir/$tree"
    runs="$(runs_for "$tree")"
    dest="$work/$tree-dest"
    pipe="$work/$tree-pipe.tar.zst"
    rrepo="$work/$tree-restic"
    xdir="$extract_root/$tree-extract"
    ref="$work/$tree-ref"
    echo "== archive: $tree ($runs runs)"

    # A reference archive for the two verify passes to read.
    rm -rf "$ref"
    "$bin" --root "$bench_dir" archive "$tree" --dest "$ref" --date "$date" --no-verify -q >/dev/null
    a="$ref/$tree-$date.tar.zst"

    args=(
        --prepare "rm -rf '$dest'" -n datamig-archive
        "'$bin' --root '$bench_dir' archive $tree --dest '$dest' --date $date --no-verify -q"
        --prepare "rm -f '$pipe'" -n tar-zstd
        "tar -C '$src' -cf - . | zstd -T0 -3 -q > '$pipe'"
        # Informational: the same pipeline made durable, as datamig's output is
        # (datamig fsyncs the archive and its sidecars before renaming them).
        --prepare "rm -f '$pipe'" -n tar-zstd-sync
        "tar -C '$src' -cf - . | zstd -T0 -3 -q > '$pipe' && sync '$pipe'"
        --prepare "rm -rf '$rrepo' && restic init -q --repo '$rrepo'" -n restic
        "restic backup -q --no-cache --repo '$rrepo' '$src'"
        --prepare "rm -rf '$dest'" -n datamig-archive-verify
        "'$bin' --root '$bench_dir' archive $tree --dest '$dest' --date $date -q"
    )
    if [[ -n "$verify_cmd" ]]; then
        args+=(--prepare "true" -n datamig-verify "'$bin' --root '$bench_dir' verify '$a' -q")
    fi
    args+=(--prepare "rm -rf '$xdir' && mkdir -p '$xdir'" -n zstd-tar-sha256sum
        "zstd -dcq '$a' | tar -xf - -C '$xdir' && cd '$xdir' && sha256sum -c --quiet .datamig/SHA256SUMS")

    hyperfine --warmup 1 --runs "$runs" --style basic \
        --export-json "$results/archive-$tree.json" "${args[@]}"

    sizes[$tree]="{\"datamig\": $(stat -c %s "$dest/$tree-$date.tar.zst"),\
 \"tar-zstd\": $(stat -c %s "$pipe"), \"restic\": $(du -sb "$rrepo" | cut -f1),\
 \"tree\": $(du -sb --apparent-size "$src" | cut -f1)}"
    rm -rf "$xdir" "$rrepo" "$dest" "$pipe" "$ref"
done
rmdir "$extract_root" 2>/dev/null || true

sizes_json="{"
for tree in $trees; do sizes_json+="\"$tree\": ${sizes[$tree]},"; done
sizes_json="${sizes_json%,}}"

python3 - "$results" "$build_rev" "$jobs" "$sizes_json" "$restic_version" $trees <<'PY'
import json, sys, datetime
results, rev, jobs, sizes, restic_v = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
trees = sys.argv[6:]
rows = {}
for t in trees:
    with open(f"{results}/archive-{t}.json") as f:
        med = {r["command"]: r["median"] for r in json.load(f)["results"]}
    embedded = med["datamig-archive-verify"] - med["datamig-archive"]
    verify = med.get("datamig-verify", embedded)
    s = sizes[t]
    rows[t] = {
        "median_s": med,
        "verify_in_archive_s": embedded,
        "datamig_verify_s": verify,
        "verify_measured_as": "datamig verify ARCHIVE" if "datamig-verify" in med
            else "archive with verify minus --no-verify",
        "bytes": s,
        "time datamig/tar-zstd": med["datamig-archive"] / med["tar-zstd"],
        "time datamig/tar-zstd-sync": med["datamig-archive"] / med["tar-zstd-sync"],
        "size datamig/tar-zstd": s["datamig"] / s["tar-zstd"],
        "time restic/datamig": med["restic"] / med["datamig-archive"],
        "time verify datamig/zstd-tar-sha256sum": verify / med["zstd-tar-sha256sum"],
    }
goal = lambda ok: "ok" if ok else "MISSED"
print()
print(f"Archive medians (s), datamig {rev}, {jobs} cores, restic {restic_v}")
print(f"{'tree':<6} {'datamig':>8} {'tar|zstd':>9} {'+sync':>6} {'restic':>7} {'dm+verify':>9} {'verify':>7} {'zstd|tar|sum':>12}"
      f" | {'time dm/tz':>10} {'size dm/tz':>10} {'dm/(tz+sync)':>12} {'restic/dm':>9} {'verify dm/ref':>13}")
for t, r in rows.items():
    m = r["median_s"]
    print(f"{t:<6} {m['datamig-archive']:8.3f} {m['tar-zstd']:9.3f} {m['tar-zstd-sync']:6.3f} {m['restic']:7.3f}"
          f" {m['datamig-archive-verify']:9.3f} {r['datamig_verify_s']:7.3f} {m['zstd-tar-sha256sum']:12.3f}"
          f" | {r['time datamig/tar-zstd']:10.2f} {r['size datamig/tar-zstd']:10.4f} {r['time datamig/tar-zstd-sync']:12.2f}"
          f" {r['time restic/datamig']:9.2f} {r['time verify datamig/zstd-tar-sha256sum']:13.2f}")
for t, r in rows.items():
    b = r["bytes"]
    print(f"bytes {t}: tree {b['tree']}, datamig {b['datamig']}, tar|zstd {b['tar-zstd']}, restic repo {b['restic']}")
print(f"verify = {rows[trees[0]]['verify_measured_as']}; read-back inside archive (with - without): "
      + ", ".join(f"{t} {r['verify_in_archive_s']:.3f} s" for t, r in rows.items()))
print("goals: time dm/tz <= 1.05, size dm/tz <= 1.03 (restic and verify: reported)")
for t, r in rows.items():
    print(f"  {t:<6} time {goal(r['time datamig/tar-zstd'] <= 1.05)}, size {goal(r['size datamig/tar-zstd'] <= 1.03)}")
with open(f"{results}/archive-summary.json", "w") as f:
    json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"),
               "datamig": rev, "cores": jobs, "restic": restic_v, "trees": rows}, f, indent=2)
    f.write("\n")
PY
