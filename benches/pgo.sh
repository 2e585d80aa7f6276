#!/usr/bin/env bash
# The binary that ships is optimised with a profile of the waypoint under load
# (PGO): docker/waypoint.profdata.xz, made by `train` and committed.
#
#   benches/pgo.sh build   the dist binary with that profile: target/pgo/dist/waypoint,
#                          as docker/Dockerfile builds it (what the load bench
#                          measures when benches/run hands it over as WAYPOINT_BIN)
#   benches/pgo.sh train   make the profile again: an instrumented dist build runs
#                          every waypoint row of the load bench (plaintext, HBONE,
#                          gRPC, TCP, authz, traced); needs llvm-profdata of rustc's
#                          LLVM (Debian's llvm-N) and what the load bench needs
#
# Train again when the request path changes: LLVM matches the profile function by
# function, so a function changed since training is optimised as if unprofiled.
# Each build is fat LTO, about 15 minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=docker/waypoint.profdata.xz

# Own target dirs: RUSTFLAGS would otherwise rebuild the plain dist build's crates.
build() {
    RUSTFLAGS="$1" CARGO_TARGET_DIR="target/$2" \
        cargo build -j2 --profile dist --locked -p waypoint --bin waypoint
}

case "${1:-}" in
build)
    mkdir -p target/pgo
    # Rewritten only when it changed: rustc lists the profile among each crate's
    # inputs, so a new modification time would rebuild every crate.
    xz -dc "$profile" > target/pgo/waypoint.profdata.new
    if cmp -s target/pgo/waypoint.profdata.new target/pgo/waypoint.profdata; then
        rm target/pgo/waypoint.profdata.new
    else
        mv target/pgo/waypoint.profdata.new target/pgo/waypoint.profdata
    fi
    build "-Cprofile-use=$PWD/target/pgo/waypoint.profdata" pgo
    echo "pgo: target/pgo/dist/waypoint" >&2
    ;;
train)
    llvm=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
    profdata=$(command -v "llvm-profdata-$llvm" || true)
    if [ -z "$profdata" ]; then
        echo "pgo: needs llvm-profdata-$llvm (apt-get install llvm-$llvm)" >&2
        exit 1
    fi
    raw=$PWD/target/pgo-gen/raw
    build "-Cprofile-generate=$raw" pgo-gen
    # Counts from an earlier training would be merged with this one's.
    rm -rf "$raw"
    cargo bench -j2 -p waypoint --bench load --no-run
    # Absolute: cargo runs a bench in its package's directory. The rows named
    # "waypoint   ..." are the waypoint's (not Envoy's "as a waypoint").
    WAYPOINT_BIN=$PWD/target/pgo-gen/dist/waypoint LOAD_ROWS="waypoint   " \
        cargo bench -j2 -p waypoint --bench load
    # Not --sparse: a function the load never ran must stay in the profile with
    # its zero counts, so that LLVM knows it is cold, optimises it for size and
    # moves it out of the hot code's pages (a sparse profile gave 24.8 MB of code
    # where this one gives 18.9).
    "$profdata" merge -o target/pgo-gen/waypoint.profdata "$raw"
    xz -9 -c target/pgo-gen/waypoint.profdata > "$profile"
    echo "pgo: $profile" >&2
    ;;
*)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
