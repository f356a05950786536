#!/usr/bin/env bash
# Builds the images that Gantry's real-Docker tests run, without any registry:
#
#   gantry-test/busybox:latest  FROM scratch, Debian's static /bin/busybox with every applet
#                               linked into /bin (sh, httpd, sleep, nc, wget, cat, echo, true,
#                               false, ...), a minimal /etc/passwd, /tmp and a /www page for httpd.
#
# Idempotent and fast when nothing changed: the image carries a label with a hash of its inputs,
# and the build is skipped when the local image already has that hash.
#
# Needs: a running Docker daemon and the `busybox-static` package (for a static /bin/busybox).
set -euo pipefail

IMAGE="gantry-test/busybox:latest"
BUSYBOX="${GANTRY_TEST_BUSYBOX:-/bin/busybox}"

die() {
    echo "tests/images/build.sh: $*" >&2
    exit 1
}

command -v docker >/dev/null 2>&1 ||
    die "the docker CLI is not installed (Debian: apt-get install docker.io, then start dockerd)"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
    die "cannot reach the Docker daemon (${DOCKER_HOST:-unix:///var/run/docker.sock}); is dockerd running? (dockerd > /var/log/dockerd.log 2>&1 &)"
[[ -x "$BUSYBOX" ]] ||
    die "$BUSYBOX is missing (Debian: apt-get install busybox-static)"
# A dynamically linked busybox (Debian's `busybox` package) would not run in a FROM scratch image.
if command -v file >/dev/null 2>&1 && ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
    die "$BUSYBOX is not statically linked (Debian: apt-get install busybox-static)"
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT

mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/etc" "$ctx/rootfs/tmp" "$ctx/rootfs/www"
cp "$BUSYBOX" "$ctx/rootfs/bin/busybox"
# Every applet busybox knows, as a symlink; COPY keeps symlinks as they are.
for applet in $("$BUSYBOX" --list); do
    [[ "$applet" == busybox ]] || ln -s busybox "$ctx/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ctx/rootfs/etc/group"
echo 'gantry test page' >"$ctx/rootfs/www/index.html"
chmod 1777 "$ctx/rootfs/tmp"

cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
CMD ["/bin/sh"]
EOF

# The inputs' hash: busybox itself, the Dockerfile, and this script (which lays out the rootfs).
hash="$(cat "$BUSYBOX" "$ctx/Dockerfile" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
have="$(docker image inspect --format '{{index .Config.Labels "gantry.test-image-hash"}}' "$IMAGE" 2>/dev/null || true)"
if [[ "$have" == "$hash" ]]; then
    exit 0
fi

echo "tests/images/build.sh: building $IMAGE" >&2
# The classic builder needs no buildx plugin, and FROM scratch + COPY needs nothing more. Its
# output (and the CLI's notice that it is deprecated) is shown only if the build fails.
if ! out="$(DOCKER_BUILDKIT=0 docker build --label "gantry.test-image-hash=$hash" -t "$IMAGE" "$ctx" 2>&1)"; then
    echo "$out" >&2
    die "docker build of $IMAGE failed"
fi
