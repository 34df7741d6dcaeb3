#!/usr/bin/env bash
# The converter sweep (issue 21) as one queue of `dvc exp` experiments on the default with its earlier converters
# pinned (scripts/sweep_queue.sh), run one at a time, then collected into reports/converter-sweep-{vgg,vit}/
# (pwl.report.sweep: table.csv + README.md, each row traced to its experiment's dvc.lock). Needs the default's
# outputs in the workspace or DVC cache (`dvc repro` first): only distill@<arch>-0 and what follows it rerun. About
# 3 min per VGG and 6 min per ViT experiment on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source .venv/bin/activate
export DVC_NO_ANALYTICS=1

source scripts/sweep_queue.sh
d=arch.vgg.distill
q conv-vgg-lstsq vgg                                                  # the base: linear, least-squares start
q conv-vgg-random vgg -S $d.converter_init=random                     # linear, the module's random start
q conv-vgg-conv3x3 vgg -S $d.converter.kind=conv3x3                   # + 3x3 residual bottleneck (x0.25)
q conv-vgg-lowrank8 vgg -S $d.converter.kind=lowrank -S $d.converter.rank=8   # SN-Netv2's low-rank update
q conv-vgg-epochs4 vgg -S $d.optim.epochs=4                           # twice the distillation: a more decodable student
d=arch.vit.distill
q conv-vit-lstsq vit
q conv-vit-random vit -S $d.converter_init=random
q conv-vit-mlp vit -S $d.converter.kind=mlp                           # + residual token MLP (x0.25)
run_queue

Q="Which converter makes every loading state usable? Kinds and starts of the converters, on the default profile's
teacher and scratch student (replica 0); every other param as in the profile."
python scripts/collect_sweep.py converter-sweep-vgg --arch vgg --title "Converter sweep: VGG" --question "$Q" \
  lstsq=conv-vgg-lstsq random=conv-vgg-random conv3x3=conv-vgg-conv3x3 lowrank8=conv-vgg-lowrank8 \
  epochs4=conv-vgg-epochs4
python scripts/collect_sweep.py converter-sweep-vit --arch vit --title "Converter sweep: ViT" --question "$Q" \
  lstsq=conv-vit-lstsq random=conv-vit-random mlp=conv-vit-mlp
