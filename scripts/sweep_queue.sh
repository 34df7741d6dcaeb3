# Sourced by scripts/sweep_converters.sh and scripts/sweep_levers.sh: the one way their rows are queued and run.
# BASE is what the committed sweep tables ran on: the profile's converters and cross weights before 2026-12-06
# (linear; w_cross 8 VGG, 3 ViT), pinned so that the scripts still remake them; a row's own -S comes later and wins.
BASE=(-S arch.vgg.distill.converter.kind=linear -S arch.vgg.distill.loss.w_cross=8.0
      -S arch.vit.distill.converter.kind=linear -S arch.vit.distill.loss.w_cross=3.0)

q() {  # name arch [-S key=value ...]: queue one row; loadsim on nvme only (the sweeps are about accuracy and bytes)
  dvc exp run --queue -n "$1" -S profile=default -S "archs=[$2]" -S "loadsim.simulate=[nvme]" "${BASE[@]}" "${@:3}"
}

run_queue() {  # run the queued rows one at a time (two cores: never two torch jobs at once), wait for the last
  dvc queue start -j 1
  while dvc queue status 2>&1 | grep -E "Queued|Running" >/dev/null; do sleep 30; done  # grep without -q: no SIGPIPE
  dvc queue status
}
