#!/usr/bin/env bash
# Builds the waypoint image without a registry: the binary as the Dockerfile builds
# it (`benches/pgo.sh build`: the dist profile, optimised with the committed PGO
# profile), the shared libraries `ldd` says it loads (and the loader), the CA bundle,
# /etc/passwd with uid 1337 and a /tmp, assembled FROM scratch with buildah. The
# image matches docker/Dockerfile's runtime stage: entrypoint waypoint, command
# `run`, user 1337:1337, ports 15008, 15020, 15021. Then it runs the image with
# podman: `--version`, and `demo --once` with the Deployment's restrictions
# (read-only root, no capabilities, no new privileges).
#
#   docker/image/build-local.sh [--no-build] [--no-run] [--tag IMAGE] [--save FILE]
#
#   --no-build   use target/pgo/dist/waypoint as it is (default: build it first)
#   --no-run     assemble and inspect only
#   --tag        image name (default localhost/pingora-waypoint/waypoint:local)
#   --save FILE  also write the image as an OCI archive (for `kind load image-archive`)
#
# Needs root, buildah and podman (installed from Debian's packages when missing).
# The root filesystem is kept in target/image/rootfs for inspection.
set -euo pipefail
cd "$(dirname "$0")/../.."

tag=localhost/pingora-waypoint/waypoint:local
build=1 run=1 save=""
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=0 ;;
        --no-run) run=0 ;;
        --tag) tag="$2"; shift ;;
        --save) save="$2"; shift ;;
        *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
    shift
done

say() { echo "== $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    # Rootless buildah needs subordinate ids and the run needs user namespaces;
    # neither is set up on our machines, where everything runs as root.
    echo "run this as root" >&2
    exit 1
fi
if ! command -v buildah >/dev/null 2>&1 || ! command -v podman >/dev/null 2>&1; then
    say "installing buildah and podman (Debian)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman >/dev/null
fi

if [ "$build" = 1 ]; then
    say "benches/pgo.sh build (the dist profile, optimised with docker/waypoint.profdata.xz)"
    benches/pgo.sh build
fi
bin=target/pgo/dist/waypoint
[ -x "$bin" ] || { echo "$bin is missing: build it or drop --no-build" >&2; exit 1; }

out=target/image
rootfs="$out/rootfs"
say "assembling $rootfs"
rm -rf "$rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/etc/waypoint" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
# As the Dockerfile: keep the symbols (function names in backtraces), drop the line
# tables the release profile adds.
objcopy --strip-debug "$bin" "$rootfs/usr/local/bin/waypoint"

# Every library at the path ldd resolved it to (the loader's default search path
# on Debian includes /lib/x86_64-linux-gnu), and the loader at the path the binary
# names (PT_INTERP).
ldd "$bin" | while read -r line; do
    case "$line" in
        *"not found"*) echo "ldd: $line" >&2; exit 1 ;;
        *"=> /"*) lib="${line#*=> }"; lib="${lib%% (*}" ;;
        /*) lib="${line%% (*}" ;;
        *) continue ;; # linux-vdso.so.1: the kernel's
    esac
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
    echo "  $lib" >&2
done

# kube's client builds its TLS roots from the system bundle (rustls-native-certs)
# besides the cluster's CA; distroless ships the same file.
ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca" ] || { echo "$ca is missing: apt-get install ca-certificates" >&2; exit 1; }
cp "$ca" "$rootfs$ca"
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
waypoint:x:1337:1337:waypoint:/nonexistent:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
waypoint:x:1337:
EOF
# glibc's resolver reads /etc/hosts (Kubernetes writes one) before DNS.
echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"

# The tree must run on its own before it becomes an image: chroot proves that the
# loader and libraries are all there, and that uid 1337 can execute the binary.
say "chroot --userspec=1337:1337 $rootfs /usr/local/bin/waypoint --version"
chroot --userspec=1337:1337 "$rootfs" /usr/local/bin/waypoint --version

say "buildah: FROM scratch → $tag"
ctr=$(buildah from scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
buildah copy --quiet "$ctr" "$rootfs" / >/dev/null
buildah config \
    --entrypoint '["/usr/local/bin/waypoint"]' --cmd run \
    --user 1337:1337 \
    --port 15008 --port 15020 --port 15021 \
    --env PATH=/usr/local/bin:/usr/bin:/bin \
    --env WAYPOINT_CONFIG_DIR=/etc/waypoint/config \
    --label org.opencontainers.image.title=waypoint \
    --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    "$ctr"
previous=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
buildah commit --quiet --rm "$ctr" "$tag" >/dev/null
trap - EXIT
# The last build under this tag, now untagged: nothing else refers to it.
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$tag")" ]; then
    podman rmi "$previous" >/dev/null 2>&1 || true
fi
buildah inspect --type image --format \
    'entrypoint={{.OCIv1.Config.Entrypoint}} cmd={{.OCIv1.Config.Cmd}} user={{.OCIv1.Config.User}} ports={{.OCIv1.Config.ExposedPorts}}{{"\n"}}' \
    "$tag"
podman image ls --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}' "$tag"

if [ -n "$save" ]; then
    say "podman save --format oci-archive -o $save"
    rm -f "$save"
    podman save --quiet --format oci-archive -o "$save" "$tag"
fi

[ "$run" = 1 ] || exit 0

# What this host lets podman do. Both are facts of the sandbox our machines run in,
# not of the image; on an ordinary host neither applies and podman runs as is.
run_opts=()
# A v2 hierarchy with controllers beside the v1 ones (hybrid cgroups): crun 1.8
# refuses ("cgroups in hybrid mode not supported, drop all controllers from
# cgroupv2"); runc accepts it.
if grep -qs . /sys/fs/cgroup/unified/cgroup.controllers; then
    command -v runc >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc >/dev/null
    run_opts+=(--runtime runc)
fi
# Without CAP_SYS_RESOURCE in the bounding set, the runtime cannot raise the
# limits podman asks for by default ("setrlimit `RLIMIT_NOFILE`: Operation not
# permitted"): ask for this shell's open-file limit and a process limit under the
# host's.
capbnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
if (( (0x$capbnd >> 24 & 1) == 0 )); then
    run_opts+=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
fi
# As the Deployment runs it: read-only root (podman mounts a tmpfs on /tmp), no
# capabilities, no privilege escalation.
run_opts+=(--read-only --cap-drop ALL --security-opt no-new-privileges)

say "podman run $tag --version"
podman run --rm "${run_opts[@]}" --network none "$tag" --version

# The demo binds loopback only, so it needs no network. Its manifests and dev
# certificates land in a host directory that `run` reads next; writing there also
# shows the process runs as 1337.
work=$(mktemp -d)
name="waypoint-image-check-$$"
trap 'podman rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
chown 1337:1337 "$work"
say "podman run $tag demo --once --requests 200"
podman run --rm "${run_opts[@]}" --network none -v "$work:/demo" "$tag" \
    demo --once --requests 200 --dir /demo
owner=$(stat -c %u:%g "$work/certs/waypoint/key.pem")
[ "$owner" = 1337:1337 ] || { echo "demo wrote its files as $owner, not 1337:1337" >&2; exit 1; }

# `run` on podman's bridge network with the readiness and metrics ports
# published: ready once config and certificate are loaded, and a clean exit 0
# after SIGTERM's drain.
say "podman run $tag run --config-source dir (ports 15020 and 15021 published)"
podman run -d --name "$name" "${run_opts[@]}" -v "$work:/demo:ro" \
    -p 127.0.0.1::15020 -p 127.0.0.1::15021 "$tag" \
    run --config-source dir --config-dir /demo/config --cert-dir /demo/certs/waypoint --drain-period 1 >/dev/null
ready=$(podman port "$name" 15021/tcp)
metrics=$(podman port "$name" 15020/tcp)
for _ in $(seq 50); do
    curl -fsS "http://$ready/healthz/ready" >/dev/null 2>&1 && break
    sleep 0.2
done
echo "GET $ready/healthz/ready: $(curl -sS -o /dev/null -w '%{http_code}' "http://$ready/healthz/ready")"
scrape=$(curl -fsS "http://$metrics/stats/prometheus")
grep -q '^waypoint_config_generation' <<<"$scrape" \
    || { echo "no waypoint_config_generation at $metrics/stats/prometheus" >&2; podman logs "$name" >&2; exit 1; }
echo "GET $metrics/stats/prometheus: waypoint_config_generation present"
podman stop -t 10 "$name" >/dev/null
code=$(podman inspect "$name" --format '{{.State.ExitCode}}')
podman logs "$name" 2>&1 | tail -3
[ "$code" = 0 ] || { echo "run exited $code after SIGTERM" >&2; exit 1; }
echo "run: exit 0 after SIGTERM"
