#!/usr/bin/env bash
# Probes of issue 21 that are not pipeline params (yet): ways to allocate the training signal, and a non-linearity
# after the converters, each tried on the default profile's teacher and scratch student (replica 0; the ViT rows
# on replicas 0-2) to learn whether it moves the weakest loading states before anyone makes it a param. Each
# probe runs the `distill` and `evaluate` stage scripts in a throwaway git worktree at BASE with
# scripts/probe_levers.patch applied (switched by PROBE_* environment variables, so one patch serves every row) or
# with params values changed, and prints the targets' measures (test %, gaps in points against all-S). The data
# and weights come from this repository's DVC cache: run `dvc repro` and the default-seeds variant first. About
# 2.5 min per VGG probe, 5 per ViT replica.
# Usage: bash scripts/probe_levers.sh [ROW...]
# (rows: relu sampler-dro sampler-uniform vgg-wsync4 vgg-conv3x3-wcross16 vgg-conv3x3-hr1-wcross16
# vgg-conv3x3-wcross16-ep3 vit-wcross6 vit-mlp-wcross6; the ViT rows and the vgg-conv3x3 rows run replicas 0-2,
# or those PROBE_SEEDS names, e.g. PROBE_SEEDS="1 2")
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BASE=e04a7c5  # the code the patch applies to, and whose dvc.lock names the default's data and weights
source .venv/bin/activate
export DVC_NO_ANALYTICS=1
WT=$(mktemp -d /tmp/pwl-probe.XXXXXX)
trap 'git -C "$REPO" worktree remove --force "$WT" >/dev/null 2>&1 || true' EXIT
git worktree add -q --detach "$WT" "$BASE"
cd "$WT"
ln -s "$REPO/.venv" .venv
dvc cache dir --local "$REPO/.dvc/cache"
# the default-seeds variant's lock names the default's data and the teachers and scratch students of replicas 0-2
cp reports/default-seeds/lock.yaml dvc.lock
SEEDS='seeds=[0,1,2]'  # --seed must be one of seeds
python -m pwl.profile default "$SEEDS"
dvc checkout -q prepare train_{teacher,student}@{vgg,vit}-{0,1,2} || {
  echo "the default's data or weights are not in $REPO/.dvc/cache: run 'dvc repro' and the default-seeds" \
       "variant there first (docs/reports.md, Regenerating)" >&2; exit 2; }
[ -f reports/params_checked.txt ] || python -m stages.check_params
git apply "$REPO/scripts/probe_levers.patch"

probe() {  # name arch seed [key=value ...]: distill + evaluate replica `seed` of `arch`, print one row
  local name=$1 arch=$2 seed=$3
  python -m pwl.profile default "$SEEDS" "${@:4}"  # the default's params with the overrides, validated
  local t0=$SECONDS
  python -m stages.distill --arch "$arch" --seed "$seed" > "probe-$name.log" 2>&1 || { tail "probe-$name.log"; exit 1; }
  python -m stages.evaluate --arch "$arch" --seed "$seed" >> "probe-$name.log" 2>&1 || { tail "probe-$name.log"; exit 1; }
  python - "$name (seed $seed)" "$arch" $((SECONDS - t0)) "$seed" <<'PY'
import json, sys
name, arch, secs, seed = sys.argv[1:]
e = json.load(open(f"reports/default/metrics/{arch}/s{seed}/eval.json"))
lat = e["lattice_test"]
print(f"| {name} | {arch} | {100 * e['all_student_test']:.2f} | {lat['worst_state']} {100 * lat['worst_vs_all_S']:+.2f} "
      f"| {100 * lat['nonprefix_vs_all_S']:+.2f} | {lat['below_all_S']} | {100 * e['prefix_worst_dip']:+.2f} | {secs} |",
      flush=True)
PY
}

probe_replicas() {  # name arch [key=value ...]: `probe` on replicas 0-2, or on those PROBE_SEEDS names
  local seed
  for seed in ${PROBE_SEEDS:-0 1 2}; do probe "$1" "$2" "$seed" "${@:3}"; done
}

echo "| probe | arch | all-S | worst state - all-S | non-prefix mean - all-S | states < all-S - 1 | smallest prefix step | s |"
echo "|---|---|---|---|---|---|---|---|"
rows=("$@")
[ ${#rows[@]} -eq 0 ] && rows=(relu sampler-dro sampler-uniform vgg-wsync4 vgg-conv3x3-wcross16 vgg-conv3x3-hr1-wcross16
  vgg-conv3x3-wcross16-ep3 vit-wcross6 vit-mlp-wcross6)
vit=arch.vit.distill
vgg=arch.vgg.distill
c3w16=($vgg.converter.kind=conv3x3 $vgg.loss.w_cross=16.0)  # the VGG pair the conv3x3 rows start from
for row in "${rows[@]}"; do
  case $row in
    relu) PROBE_RELU=encdec probe $row vgg 0 ;;  # a ReLU after every converter: block outputs are non-negative
    sampler-dro) PROBE_SAMPLER=dro PROBE_DUMP=1 probe $row vgg 0 ;;  # the hardest states sampled most
    sampler-uniform) PROBE_SAMPLER=uniform probe $row vgg 0 ;;   # every non-prefix state alike
    vgg-wsync4) probe $row vgg 0 $vgg.loss.w_sync=4.0 ;;  # the student pulled towards decodable
    vgg-conv3x3-wcross16)  # what helped the ViT, on VGG: a richer converter and twice the cross weight
      probe_replicas $row vgg "${c3w16[@]}" ;;
    vgg-conv3x3-hr1-wcross16)  # the same with a branch as wide as the converter's output (hidden_ratio 1)
      probe_replicas $row vgg "${c3w16[@]}" $vgg.converter.hidden_ratio=1.0 ;;
    vgg-conv3x3-wcross16-ep3)  # the same pair with a third distillation epoch (cifar10-cpu's VGG budget)
      probe_replicas $row vgg "${c3w16[@]}" $vgg.optim.epochs=3 ;;
    vit-wcross6) probe_replicas $row vit $vit.loss.w_cross=6.0 ;;  # twice the ViT's cross weight
    vit-mlp-wcross6)  # the token-MLP converter and twice the cross weight
      probe_replicas $row vit $vit.converter.kind=mlp $vit.loss.w_cross=6.0 ;;
    *) echo "unknown probe $row" >&2; exit 2 ;;
  esac
done
