"""Data-parallel training (DDP) on the CPU with the gloo backend and two processes: the loop averages
gradients exactly like one process on the global batch, and only rank 0 writes anything."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
import yaml
from torch import nn

from pwl.compute import CPU, Compute
from pwl.config import OptimConfig
from pwl.data import Normalizer, Split
from pwl.errors import PWLError
from pwl.data import Batches
from pwl.train import Trainee, TrainingRun, fit

REPO = Path(__file__).resolve().parents[1]
OPTIM = OptimConfig(lr=0.1, epochs=2, batch_size=8, momentum=0.9, weight_decay=0.0)


def data() -> Split:
    g = torch.Generator().manual_seed(3)
    return Split(torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8, generator=g),
                 torch.randint(0, 3, (40,), generator=g))


def net() -> nn.Module:
    torch.manual_seed(5)  # no BatchNorm: per-rank batch statistics would differ from one big batch
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))


def train(model: nn.Module, ckpt: Path, compute: Compute, epochs_seen: list) -> dict:
    def loss_fn(x, y, progress):
        logits = model(x)
        return F.cross_entropy(logits, y), {}, logits

    fit(Trainee(model, [{"params": list(model.parameters())}], loss_fn,
                lambda: {"score": float(len(epochs_seen))}),  # rises: the last epoch is the best
        TrainingRun(train=data(), norm=Normalizer([0.5], [0.25]), optim=OPTIM, augment=None, checkpoint=ckpt,
                    fingerprint="ddp", seed=0, on_epoch=lambda rec: epochs_seen.append(rec["epoch"]), desc="ddp",
                    compute=compute))
    return {k: v.clone() for k, v in model.state_dict().items()}


def _worker(rank: int, world: int, port: int, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    import pwl.train
    saves = []
    real_save = pwl.train.save_resume_checkpoint
    pwl.train.save_resume_checkpoint = lambda path, state: (saves.append(str(path)), real_save(path, state))
    epochs_seen = []
    state = train(net(), Path(out) / "ckpt.pt", Compute(torch.device("cpu"), rank=rank, world_size=world), epochs_seen)
    torch.save({"state": state, "saves": saves, "epochs_seen": epochs_seen}, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_fit_equals_one_process_and_only_rank0_writes(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for k in r0["state"]:  # DDP keeps the ranks identical ...
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    single = train(net(), tmp_path / "single.pt", CPU, [])
    for k in single:  # ... and equal to one process on the same global batches (gradients averaged)
        assert torch.allclose(r0["state"][k], single[k], atol=1e-5), k
    assert not torch.equal(single["1.weight"], net().state_dict()["1.weight"])  # it did train
    assert r0["saves"] == [str(tmp_path / "ckpt.pt")] * OPTIM.epochs and r1["saves"] == []
    assert r0["epochs_seen"] == [1, 2] and r1["epochs_seen"] == []


def test_batches_shard_each_global_batch_across_ranks():
    split = Split(torch.zeros(24, 1, 2, 2, dtype=torch.uint8), torch.arange(24))
    norm = Normalizer([0.0], [1.0])
    whole = [y for _, y in Batches(split, 8, norm, None).epoch(7)]
    parts = [[y for _, y in Batches(split, 8, norm, None, Compute(torch.device("cpu"), rank=r, world_size=2)).epoch(7)]
             for r in (0, 1)]
    for step, y in enumerate(whole):
        assert sorted(torch.cat([parts[0][step], parts[1][step]]).tolist()) == sorted(y.tolist())
        assert len(parts[0][step]) == len(parts[1][step]) == 4
    with pytest.raises(PWLError, match="does not split evenly over 3 processes"):
        Batches(split, 8, norm, None, Compute(torch.device("cpu"), rank=0, world_size=3))


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_torchrun_training_stage_two_processes(tmp_path):
    """The real stage under `torchrun --nproc_per_node=2` (gloo): one set of outputs, written by rank 0."""
    from pwl.profile import compose
    from test_stage_errors import fake_fashion

    compose("smoke", out=tmp_path / "params.yaml", conf=REPO / "conf")
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["data"].update(root=str(fake_fashion(tmp_path / "raw")), val_size=50)
    raw["threads"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    prep = subprocess.run([sys.executable, str(REPO / "stages/prepare.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert prep.returncode == 0, prep.stderr
    torchrun = Path(sys.executable).parent / "torchrun"
    res = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", str(REPO / "stages/train.py"),
                          "--arch", "vgg", "--seed", "0", "--role", "teacher"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "reports/smoke/metrics/vgg/s0/teacher.json").read_text())
    assert metrics["world_size"] == 2 and 0 <= metrics["test_acc"] <= 1
    assert (tmp_path / "models/vgg/s0/teacher.safetensors").exists()
    assert res.stdout.count("[vgg/teacher] epoch 1:") == 1  # one process reports (and writes)
    live = json.loads((tmp_path / "reports/smoke/training/vgg/s0/teacher/metrics.json").read_text())
    assert live["step"] == 0  # one epoch logged once: DVCLive's last step index
