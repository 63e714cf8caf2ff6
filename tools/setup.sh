#!/usr/bin/env bash
# glocal setup, idempotent: Debian packages, the pinned Python environment, the package itself.
#
#   bash tools/setup.sh            # then use ./.venv/bin/python
#
# The heavy environment (torch & co., about 6 GB) lives in a cache outside the clone, keyed by the
# hash of tools/requirements.lock, so fresh clones reuse it; a machine without the cache builds it.
# The clone gets a small .venv of its own that sees the cached packages and installs glocal
# (editable) from this checkout. Set GLOCAL_CACHE to move the cache (default ~/.cache/glocal).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lock="$root/tools/requirements.lock"
python=${GLOCAL_PYTHON:-python3}

# --- 1. Debian packages the toolkit reads data or decodes media with, and the C compiler that ----
# builds the optional compiled selective scan (core/scan_kernel.c) on first use; espeak-ng and flite
# speak the generated speech sets, pocketsphinx-testdata has real recordings with transcripts
debs=(dataset-fashion-mnist ffmpeg gcc libc6-dev espeak-ng flite pocketsphinx-testdata)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "[setup] installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- 1b. CGAL's demo data (point clouds): Debian's libcgal-demo, unpacked, not installed ----------
# data.tar.gz (meshes/*.off, points_3/*.ply|xyz: b9_training.ply, building.ply, ...) goes to
# $cache/data/cgal; the examples' LiDAR files (urban.las, pig_points.las) to $cache/data/cgal/examples.
# Read by glocal.modalities.points (data_root(); GLOCAL_CGAL_DATA overrides the folder).
cgal_dir="${GLOCAL_CACHE:-$HOME/.cache/glocal}/data/cgal"
if [ ! -f "$cgal_dir/.complete" ]; then
  echo "[setup] fetching CGAL's demo data (Debian libcgal-demo) into $cgal_dir"
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download libcgal-demo >/dev/null 2>&1); then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    (cd "$tmp" && apt-get download libcgal-demo >/dev/null) \
      || { rm -rf "$tmp"; echo "[setup] apt-get download libcgal-demo failed"; exit 1; }
  fi
  dpkg-deb -x "$tmp"/libcgal-demo_*.deb "$tmp/deb"
  data_tgz=$(find "$tmp/deb" -name data.tar.gz -print -quit)
  examples_tgz=$(find "$tmp/deb" -name examples.tar.gz -print -quit)
  [ -n "$data_tgz" ] || { rm -rf "$tmp"; echo "[setup] libcgal-demo holds no data.tar.gz"; exit 1; }
  rm -rf "$cgal_dir" && mkdir -p "$cgal_dir/examples"
  tar -xzf "$data_tgz" -C "$cgal_dir" --strip-components=1  # data/meshes -> $cgal_dir/meshes
  if [ -n "$examples_tgz" ]; then
    tar -xzf "$examples_tgz" -C "$cgal_dir/examples" --strip-components=1 --wildcards '*.las'
  fi
  rm -rf "$tmp"
  touch "$cgal_dir/.complete"
fi

# --- 2. the pinned environment, cached by the lock file's hash -----------------------------------
cache=${GLOCAL_CACHE:-$HOME/.cache/glocal}
key=$(sha256sum "$lock" | cut -c1-16)
env_dir="$cache/env-$key"
mkdir -p "$cache"
(
  flock 9
  if [ ! -f "$env_dir/.complete" ]; then
    echo "[setup] building the pinned environment in $env_dir (once per lock file)"
    rm -rf "$env_dir"
    "$python" -m venv "$env_dir"
    log="$cache/env-$key.log"
    # torch / torchvision are pinned to the releases this machine kind keeps in its local wheel
    # store, so nothing pulls a second multi-GB torch build.
    # Packages whose build imports torch (marked "no-build-isolation" in the lock) are built in a
    # second step against the pinned torch, so no isolated build env ever resolves another torch.
    plain="$cache/env-$key.plain.txt"
    grep -v 'no-build-isolation' "$lock" > "$plain"
    nobuild=$(grep 'no-build-isolation' "$lock" | sed 's/#.*//' | xargs || true)
    if ! { "$env_dir/bin/python" -m pip install --upgrade "pip>=24" \
           && "$env_dir/bin/python" -m pip install -r "$plain" \
           && { [ -z "$nobuild" ] || "$env_dir/bin/python" -m pip install --no-deps --no-build-isolation $nobuild; }; \
         } >"$log" 2>&1; then
      tail -n 30 "$log"; echo "[setup] pip failed; full log: $log"; exit 1
    fi
    touch "$env_dir/.complete"
  fi
) 9>"$cache/.lock-$key"

# --- 3. this clone's own small venv: sees the cached packages, installs glocal editable ----------
venv="$root/.venv"
site_of() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv --without-pip "$venv"
fi
env_site=$(site_of "$env_dir")
echo "import site; site.addsitedir('$env_site')" > "$(site_of "$venv")/_glocal_env.pth"
# the cached pip (with setuptools beside it) installs into this venv; no build isolation, no deps
"$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$root" >"$venv/install.log" 2>&1 \
  || { tail -n 30 "$venv/install.log"; echo "[setup] installing glocal failed"; exit 1; }
"$venv/bin/python" -c "import glocal.core, glocal.tasks, glocal.modalities" \
  || { echo "[setup] glocal does not import: see the messages above"; exit 1; }
echo "[setup] ready: $venv/bin/python  (environment $env_dir)"
