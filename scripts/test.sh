#!/usr/bin/env bash
# Install what the test suite needs, then run it. Arguments go to pytest.
#
# The tests talk to real tools: dciodvfy (dicom3tools) judges every object, and a real
# Orthanc (with its DICOMweb plugin) receives C-STORE and STOW-RS; nginx serves http://
# inputs. The dask extra brings Dask (a LocalCluster runs the cluster tests) and fsspec.
# In CI a missing tool fails the tests instead of skipping them, so this script installs
# them first.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
command -v dcmdump >/dev/null 2>&1 || need+=(dcmtk)
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
command -v strace >/dev/null 2>&1 || need+=(strace)  # the batch's sync-before-commit order
command -v nginx >/dev/null 2>&1 || need+=(nginx)  # http:// inputs, served with byte ranges
ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so* >/dev/null 2>&1 || need+=(orthanc-dicomweb)
if [ "${#need[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing ${need[*]} (apt-get)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${need[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test,dask]'
exec python3 -m pytest "$@"
