# Sourced by scripts/dev, scripts/test and .ci/run: installs what the build needs, only when missing,
# and points cargo at one target directory outside the clone (RocksDB is compiled once, then reused).

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ecsd-target}"
mkdir -p "$CARGO_TARGET_DIR"

ecsd_missing=()
# RocksDB's bindings need libclang (bindgen) and a C++ compiler.
ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || ecsd_missing+=(clang libclang-dev)
command -v c++ >/dev/null 2>&1 || ecsd_missing+=(g++)
if [ ${#ecsd_missing[@]} -gt 0 ]; then
  echo "ecsd: installing ${ecsd_missing[*]} (needed to build RocksDB)" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${ecsd_missing[@]}"
fi
unset ecsd_missing
