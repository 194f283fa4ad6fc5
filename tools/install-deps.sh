#!/bin/sh
# Install every Debian package facetrain's build, demo and tests need. Idempotent: packages
# already present are left alone. Run as root (or through sudo) on Debian 12.
set -eu
PKGS="build-essential cmake pkg-config clang clang-format util-linux
liblmdb-dev lmdb-utils liburing-dev libturbojpeg0-dev libjpeg62-turbo-dev libxxhash-dev
libopenblas-dev libopenblas0-openmp libcjson-dev libdnnl-dev
protobuf-c-compiler libprotobuf-c-dev libonnx-dev openmpi-bin libopenmpi-dev
slurmd slurmctld slurm-client munge
python3 python3-numpy python3-torch python3-opencv python3-onnx python3-pip"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing:$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086 # $missing is a list of package names
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
