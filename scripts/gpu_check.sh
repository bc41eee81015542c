#!/usr/bin/env bash
# GPU check for deskml on an NVIDIA machine without network access (see docs/gpu.md).
#
#   scripts/gpu_check.sh /path/to/xllamacpp-<version>.tar.gz [python]
#
# Needs: nvidia-smi, nvcc (CUDA toolkit), cmake, ninja, a C/C++ compiler, a Rust toolchain (xllamacpp's
# build links llguidance), and a Python with torch+CUDA, numpy, pydantic and deskml's other imports (the
# venv is made with --system-site-packages, so whatever that Python has is used; nothing is downloaded).
# Builds xllamacpp from the sdist for this GPU's architecture only (the full build covers every
# architecture and takes far longer), generates a random-weight GGUF, and runs scripts/gpu_check.py.
# Budget: about 10 minutes on a 16-core machine; each step is time-limited.
set -euo pipefail

SDIST=${1:?usage: scripts/gpu_check.sh XLLAMACPP_SDIST.tar.gz [python]}
PYTHON=${2:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${GPU_CHECK_DIR:-$(mktemp -d /tmp/deskml-gpu-check.XXXXXX)}
started=$(date +%s)
step() { echo "== [$(( $(date +%s) - started ))s] $*"; }

step "devices"
nvidia-smi -L || { echo "nvidia-smi found no GPU: this check needs an NVIDIA GPU"; exit 2; }
nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version,compute_cap --format=csv
for tool in nvcc cmake ninja cargo; do
  command -v "$tool" >/dev/null || echo "MISSING: $tool (the xllamacpp build will likely fail without it)"
done
nvcc --version | tail -2 || true
# compute capability 9.0 -> CUDA architecture 90 (-real: native code for this GPU only)
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
step "building xllamacpp for sm_${ARCH} from ${SDIST} in ${WORK}"
"$PYTHON" -m venv --system-site-packages "$WORK/venv"
VPY="$WORK/venv/bin/python"
mkdir -p "$WORK/src"
tar -xzf "$SDIST" -C "$WORK/src" --strip-components=1
# xllamacpp's scripts/build.py reads CUDA_ARCHITECTURES (default "native") and NPROC, and appends CMAKE_ARGS
# to its own. llama.cpp's llguidance is a Rust project its CMake clones at build time: without network pass
# GPU_CHECK_CMAKE_ARGS=-DLLAMA_LLGUIDANCE=OFF (untested whether xllamacpp then still links).
export XLLAMACPP_BUILD_CUDA=1 CUDA_ARCHITECTURES="${ARCH}-real" NPROC=$(nproc)
export CMAKE_GENERATOR=Ninja CMAKE_ARGS="${GPU_CHECK_CMAKE_ARGS:-}"
# --no-build-isolation --no-index: no network; build requirements come from the system Python
timeout 420 "$VPY" -m pip install --no-build-isolation --no-index --no-deps -q "$WORK/src" \
  > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; echo "BUILD FAILED (log: $WORK/build.log)"; exit 3; }
step "built"
"$VPY" -c "import xllamacpp; print('xllamacpp', xllamacpp.__version__, [d['name'] for d in xllamacpp.get_device_info()])"

step "generating a random-weight GGUF and measuring GPU vs CPU"
"$VPY" "$ROOT/scripts/make_tiny_gguf.py" "$WORK/tiny.gguf" --layers 12
cd "$ROOT"
PYTHONPATH="$ROOT" timeout 240 "$VPY" scripts/gpu_check.py --model "$WORK/tiny.gguf" --tokens 128 --streams 8
step "done"
