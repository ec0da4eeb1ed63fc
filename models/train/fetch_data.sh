#!/usr/bin/env bash
# Fetch the training data from Debian packages and derive the files the trainers read:
#   models/train/data/corpus.txt     fortunes of `fortunes` + `fortunes-min` (fortune-mod data, BSD licence), cleaned
#   models/train/data/digits.csv.gz  scikit-learn's digits data set, as shipped in `python3-sklearn` (BSD-3-Clause)
#   models/train/data/SOURCES.txt    package names, versions and licences
# Needs apt-get (Debian/Ubuntu) and python3; run from anywhere. The data folder is git-ignored.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="$here/data"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$data"
cd "$scratch"
apt-get download fortunes fortunes-min python3-sklearn >/dev/null 2>&1 || {
  echo "apt-get download failed: run 'apt-get update' first" >&2; exit 1; }
: > "$data/SOURCES.txt"
for deb in ./*.deb; do
  dpkg -x "$deb" x
  printf '%s %s (%s)\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" "$(basename "$deb")" >> "$data/SOURCES.txt"
done
cat >> "$data/SOURCES.txt" <<'TXT'
licences: fortunes, fortunes-min: BSD (fortune-mod; see /usr/share/doc/fortunes/copyright);
          python3-sklearn: BSD-3-Clause (digits: UCI Optical Recognition of Handwritten Digits, test part)
TXT
python3 "$here/prepare_corpus.py" x/usr/share/games/fortunes "$data/corpus.txt"
cp x/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz "$data/digits.csv.gz"
sha256sum "$data/corpus.txt" "$data/digits.csv.gz" | sed "s#$data/##" >> "$data/SOURCES.txt"
cat "$data/SOURCES.txt"
