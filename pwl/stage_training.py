"""The path the training stages share (train_teacher/train_student, kd, distill): params, data and device in;
`fit` with a DVCLive log; then, on rank 0 only, weights, metrics and the end of the resume checkpoint.
A stage script only builds its models, says what it trains and what its metrics hold."""
from dataclasses import dataclass
from typing import Callable

from torch import nn

from . import paths
from .checkpoints import fingerprint, save_weights
from .compute import Compute, make_compute, seed_and_threads
from .config import ArchConfig, Params
from .data import Dataset, Normalizer, Split, load_prepared
from .evaluation import accuracy
from .stage_cli import elapsed, epoch_logger, setup, training_done, write_json
from .train import FitResult, Trainee, TrainingRun, fit


@dataclass
class TrainingStage:
    params: Params
    arch: str
    cfg: ArchConfig  # params.arch[arch]
    ds: Dataset
    compute: Compute
    norm: Normalizer
    train: Split  # the splits where the compute wants them (on the GPU, or pinned)
    val: Split
    test: Split

    @classmethod
    def start(cls, description: str, roles: tuple[str, ...] = ()) -> tuple["TrainingStage", str | None]:
        """Parse arguments, validate params, seed, load the prepared data, pick the device. Returns the stage
        and its `--role` (None without `roles`)."""
        params, args = setup(description, roles=roles, replica=True)
        seed_and_threads(params)
        ds = load_prepared(paths.DATA)
        compute = make_compute(params.compute)
        splits = (compute.split(s) for s in (ds.train, ds.val, ds.test))
        stage = cls(params, args.arch, params.for_arch(args.arch), ds, compute,
                    Normalizer(ds.manifest["mean"], ds.manifest["std"]), *splits)
        return stage, getattr(args, "role", None)

    def accuracy(self, model: Callable, split: Split) -> float:
        return accuracy(model, split, self.norm, self.params.eval.batch_size, self.compute)

    def fit(self, role: str, trainee: Trainee, optim, depends_on: tuple) -> FitResult:
        """Train `trainee` with the recipe `optim`. A resume checkpoint is used only if it was written for the
        same `depends_on` (the configs the stage's result depends on), augmentation, seed and data."""
        p = self.params
        with epoch_logger(paths.live_dir(p.profile, self.arch, role, p.seed), self.compute.is_main) as on_epoch:
            return fit(trainee, TrainingRun(
                train=self.train, norm=self.norm, optim=optim, augment=p.augment,
                checkpoint=paths.resume_checkpoint(self.arch, role, p.seed),
                fingerprint=fingerprint(*depends_on, p.augment, p.seed, self.ds.manifest["splits"]),
                seed=p.seed, compute=self.compute, desc=f"{self.arch}/{role}", on_epoch=on_epoch,
                resize_to=self.augment_size(role)))

    def augment_size(self, role: str) -> int | None:
        """Where `augment.at_input_size` asks for it, the size the trained model resizes its images to (the
        ViT's `input_size`; the teacher's where both models see the batch, kd and distillation): the batches
        are resized to it before augmentation. None: augment the images as stored."""
        model_cfg = self.cfg.student if role == "student" else self.cfg.teacher
        return getattr(model_cfg, "input_size", None) if self.params.augment.at_input_size else None

    def finish(self, role: str, trained: nn.Module, meta: dict, metrics: Callable[[], dict]) -> None:
        """On rank 0: save `trained`'s weights (with `meta` to rebuild it), write `metrics()` with where the stage
        ran and its wall time, and drop the resume checkpoint (the outputs now exist). Other ranks write nothing."""
        if not self.compute.is_main:
            return
        p = self.params
        save_weights(paths.weights(self.arch, role, p.seed), trained.state_dict(),
                     {"arch": self.arch, "role": role, **meta})
        write_json(paths.metrics(p.profile, self.arch, role, p.seed),
                   {**metrics(), **self.compute.record, "wall_s": elapsed()})
        training_done(paths.resume_checkpoint(self.arch, role, p.seed))
