#!/usr/bin/env bash
# Builds the simulated cluster's binaries from source through the Go module proxy (no release
# downloads, no Docker): kube-apiserver, kube-controller-manager, kube-scheduler and kubectl, etcd,
# kwok + kwokctl, and the Kubeflow training operator (v1, PyTorchJob).
#
# Idempotent: each component is built into a folder keyed by its version under the cache
# ($LLMOPS_CONTROLPLANE_CACHE, default ~/.cache/llmops/controlplane) and skipped when already there.
# Usage: build.sh [k8s|etcd|kwok|training-operator]...   (default: all). Needs Go >= 1.26.0.
# simulated.py reads the four *_VERSION pins below: keep them one per line, "NAME=value".
set -euo pipefail

K8S_VERSION=v1.36.3                # kube-apiserver & co.; staging modules k8s.io/* at v0.36.3
ETCD_VERSION=v3.6.16               # newest v3.6 patch served by the proxy (k8s 1.36 is tested with 3.6)
KWOK_VERSION=v0.8.0                # kwok + kwokctl, newest release
TRAINING_OPERATOR_VERSION=v1.9.4   # Kubeflow training operator v1 (PyTorchJob); built on k8s 0.36.3

CACHE=${LLMOPS_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmops/controlplane}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$CACHE/src"

log() { echo "[build.sh $(date -u +%H:%M:%S)] $*" >&2; }
timed() {  # timed NAME CMD...: run, record the wall time in $CACHE/build-times.log
  local name=$1 start=$SECONDS; shift
  BUILT=0; "$@"
  [ "$BUILT" = 1 ] || return 0
  log "$name built in $((SECONDS - start)) s"
  echo "$(date -u +%FT%TZ) $name $((SECONDS - start))s nproc=$(nproc)" >> "$CACHE/build-times.log"
}
have() { local d=$1; shift; for b in "$@"; do [ -x "$d/$b" ] || return 1; done; }
wrapper() {  # wrapper DIR MODULE PKG...: a throwaway module that imports PKG... (tools.go)
  local d=$1 mod=$2; shift 2
  mkdir -p "$d"; cd "$d"
  [ -f go.mod ] || printf 'module %s\n\ngo 1.26.0\n' "$mod" > go.mod
  { echo '//go:build tools'; echo; echo 'package tools'; echo; echo 'import ('
    for p in "$@"; do echo "	_ \"$p\""; done; echo ')'; } > tools.go
}

go version >/dev/null || { echo "build.sh: Go >= 1.26.0 is needed (https://go.dev/dl/)" >&2; exit 1; }

build_k8s() {
  local out=$CACHE/k8s-$K8S_VERSION/bin staging=v0.${K8S_VERSION#v1.} minor
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl) todo=()
  for b in "${bins[@]}"; do [ -x "$out/$b" ] || todo+=("k8s.io/kubernetes/cmd/$b"); done
  [ ${#todo[@]} -eq 0 ] && { log "k8s $K8S_VERSION: cached in $out"; return; }
  local d=$CACHE/src/k8s-$K8S_VERSION; BUILT=1
  if [ ! -f "$d/go.sum" ]; then
    rm -rf "$d"; mkdir -p "$d"; cd "$d"
    printf 'module llmops.local/k8sbins\n\ngo 1.26.0\n' > go.mod
    # k8s.io/kubernetes replaces its staging modules with ./staging/src/...; replaces in a
    # dependency are ignored, so ours points each one at its published v0.x release. The list is
    # read from that version's own go.mod, not hard-coded.
    local kmod
    kmod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$kmod"); do
      go mod edit -replace="$m=$m@$staging"
    done
    go get "k8s.io/kubernetes@$K8S_VERSION"
  fi
  wrapper "$d" llmops.local/k8sbins "${bins[@]/#/k8s.io/kubernetes/cmd/}"
  go mod tidy
  local V=k8s.io/component-base/version
  local ldf="-s -w -X $V.gitVersion=$K8S_VERSION -X $V.gitMajor=1 -X $V.gitMinor=$minor -X $V.gitTreeState=clean"
  mkdir -p "$d/out"
  go build -trimpath -ldflags "$ldf" -o "$d/out/" "${todo[@]}"
  mkdir -p "$out"
  for p in "${todo[@]}"; do mv "$d/out/${p##*/}" "$out/"; done
}

build_etcd() {
  local out=$CACHE/etcd-$ETCD_VERSION/bin
  have "$out" etcd && { log "etcd $ETCD_VERSION: cached in $out"; return; }
  local d=$CACHE/src/etcd-$ETCD_VERSION; BUILT=1
  # server/v3's go.mod has replace directives too, so `go install` refuses it: a wrapper module.
  wrapper "$d" llmops.local/etcdbin go.etcd.io/etcd/server/v3
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$d/etcd" go.etcd.io/etcd/server/v3
  mkdir -p "$out"; mv "$d/etcd" "$out/etcd"
}

build_kwok() {
  local out=$CACHE/kwok-$KWOK_VERSION/bin
  have "$out" kwok kwokctl && { log "kwok $KWOK_VERSION: cached in $out"; return; }
  BUILT=1
  GOBIN=$CACHE/src/kwok-$KWOK_VERSION go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
  mkdir -p "$out"; mv "$CACHE/src/kwok-$KWOK_VERSION"/kwok* "$out/"
}

build_training_operator() {
  local out=$CACHE/training-operator-$TRAINING_OPERATOR_VERSION/bin
  have "$out" training-operator.v1 && { log "training-operator $TRAINING_OPERATOR_VERSION: cached in $out"; return; }
  BUILT=1
  GOBIN=$CACHE/src/training-operator-$TRAINING_OPERATOR_VERSION go install -trimpath -ldflags "-s -w" \
    "github.com/kubeflow/training-operator/cmd/training-operator.v1@$TRAINING_OPERATOR_VERSION"
  mkdir -p "$out"; mv "$CACHE/src/training-operator-$TRAINING_OPERATOR_VERSION/training-operator.v1" "$out/"
  # the PyTorchJob CRD is read at run time from the module cache (not committed)
  go mod download "github.com/kubeflow/training-operator@$TRAINING_OPERATOR_VERSION"
}

components=("$@")
[ ${#components[@]} -eq 0 ] && components=(etcd kwok training-operator k8s)
for c in "${components[@]}"; do
  case $c in
    k8s) timed "k8s-$K8S_VERSION" build_k8s ;;
    etcd) timed "etcd-$ETCD_VERSION" build_etcd ;;
    kwok) timed "kwok-$KWOK_VERSION" build_kwok ;;
    training-operator) timed "training-operator-$TRAINING_OPERATOR_VERSION" build_training_operator ;;
    *) echo "build.sh: unknown component $c (k8s, etcd, kwok, training-operator)" >&2; exit 2 ;;
  esac
done
log "binaries under $CACHE"
