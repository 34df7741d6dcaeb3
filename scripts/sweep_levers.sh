#!/usr/bin/env bash
# The second VGG sweep (issue 21): levers other than the converter's kind, as one queue of `dvc exp` experiments on
# the default profile with its earlier converters pinned (linear, w_cross 8, least-squares start; sweep_queue.sh),
# collected into reports/lever-sweep-vgg/ with that setting's own run as the reference row. Needs the default's
# outputs in the workspace or DVC cache (`dvc repro` first): only distill@vgg-0 and what follows it rerun. About
# 3 min per 2-epoch VGG experiment on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source .venv/bin/activate
export DVC_NO_ANALYTICS=1

source scripts/sweep_queue.sh
d=arch.vgg.distill
q lever-vgg-samples4 vgg -S $d.loss.cross_samples=4      # twice the sampled mixed states per step
q lever-vgg-wcross16 vgg -S $d.loss.w_cross=16.0         # the cross term weighted twice the base's 8
q lever-vgg-fullwidth vgg -S 'arch.vgg.student.widths=[16,32,64,128,128]'  # the teacher's widths: identity converters
q lever-vgg-random6 vgg -S $d.init_student=random -S $d.optim.epochs=6   # a student decodable from the start
run_queue

Q="Which lever, other than the converter's kind, makes every VGG loading state usable? On the default profile's
teacher and scratch student (replica 0), linear converters with the least-squares start; every other param as in
the profile."
python scripts/collect_sweep.py lever-sweep-vgg --arch vgg --title "Lever sweep: VGG" --question "$Q" \
  default=conv-vgg-lstsq samples4=lever-vgg-samples4 wcross16=lever-vgg-wcross16 fullwidth=lever-vgg-fullwidth \
  random6=lever-vgg-random6
