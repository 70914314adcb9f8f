#!/bin/bash
# Installs everything ferry needs to build and test on a fresh Debian 12 machine: the compiler toolchain, the
# libraries (Debian packages), the JSON-schema checker of `ferry bench`'s output (python3-jsonschema), the Python
# test oracles (the `gguf` and `tokenizers` packages from PyPI) and the OpenAI client that drives `ferry serve`'s
# test (`openai` from PyPI). Idempotent; needs root or sudo.
# The CUDA toolkit is not installed here: ferry builds without it (CPU only), and with it when nvcc is found.
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config python3 python3-pip python3-jsonschema git
  libtbb-dev libeigen3-dev libmimalloc-dev libpcre2-dev doctest-dev nlohmann-json3-dev libcli11-dev libcpp-httplib-dev
  clang libclang-rt-dev)
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# jsonschema comes from Debian above; pip brings it only to a python3 that is not Debian's (pyenv, a virtualenv).
if ! python3 -c 'import gguf, numpy, tokenizers, jsonschema, openai' 2>/dev/null; then
  python3 -m pip install -q gguf numpy tokenizers jsonschema openai 2>/dev/null ||
    python3 -m pip install -q --break-system-packages gguf numpy tokenizers jsonschema openai
fi
