"""The params schema: `params.yaml` is validated once, up front, so every stage fails fast the same way.

Defaults are the published recipe (METHOD.md), as the paper profiles use it; conf/config.yaml (the CPU profile)
departs from them explicitly, with its reasons beside each value. Family-specific rules live with each family's
config (pwl/schema/families.py), never here. Imports no torch code (tests/test_config.py)."""
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import PWLError
from .schema.converters import ConverterConfig, check_converter_fits
from .schema.families import families, names_pretrained, parse_model_config
from .schema.objective import CROSS_MODES, MIXED_BN, check_pairing

DATASETS = ("fashion-mnist", "cifar10", "cifar100", "imagefolder")


class Section(BaseModel):
    # every float finite: an inf/nan learning rate or loss weight trains NaN weights without a word
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, v, info):
        """YAML's true/false is not a number: `epochs: true` must not train 1 epoch (pydantic reads it as 1)."""
        if isinstance(v, bool) and not _takes_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"{str(v).lower()} is a yes/no value, not a number or a name: write the value itself")
        return v


def _takes_bool(annotation) -> bool:
    """Whether a field's type admits a bool as such (bool, Optional[bool], Any)."""
    return annotation in (bool, Any) or any(_takes_bool(a) for a in get_args(annotation) if a is not type(None))


# Upper bounds where a value becomes a size, a count or a sleep: far above any real use, low enough that a
# typo stops here instead of exhausting memory or hanging a stage.
MAX_COUNT, MAX_BATCH, MAX_IMAGE, MAX_EPOCHS, MAX_THREADS = 2 ** 31 - 1, 2 ** 16, 2048, 100_000, 1024
SEED_MAX = 2 ** 32 - 1  # what every generator (torch, numpy, random) accepts


class DataConfig(Section):
    dataset: Literal[DATASETS] = "fashion-mnist"
    root: Optional[str] = None  # directory holding the raw files; None = system package, then download
    download: bool = True  # allowed to download when the files are not found locally
    val_size: int = Field(5000, gt=0, le=MAX_COUNT)  # held out from the official training set: picks checkpoints
    train_limit: int = Field(0, ge=0, le=MAX_COUNT)  # 0 = every remaining training image
    test_limit: int = Field(0, ge=0, le=MAX_COUNT)  # 0 = the whole test set
    image_size: int = Field(32, gt=0, le=MAX_IMAGE)  # images are zero-padded (centred) up to this size
    channels: Literal[1, 3] = 3  # imagefolder only: 3 = RGB, 1 = grayscale (the other datasets keep their own)
    resize: bool = True  # imagefolder only: bilinear resize to image_size^2; false = zero-pad, as the others

    @model_validator(mode="after")
    def _imagefolder_root(self):
        if self.dataset == "imagefolder" and not self.root:
            raise ValueError("data.dataset=imagefolder needs data.root: a directory with train/<class>/ and "
                             "test/<class>/ image folders (there is nothing to download)")
        return self


AUGMENT_ORDERS = ("crop-flip-rotate", "rotate-flip-crop")  # ours, the authors' (pwl.data.augment)


class AugmentConfig(Section):
    """Defaults: ours. The authors' pipeline (torchvision) rotates first, with nearest-neighbour sampling, and
    augments the ViT's images after resizing them to 224: `order: rotate-flip-crop`, `rotate_interpolation:
    nearest`, `at_input_size: true` emulate it (pwl/report/recipe.py)."""
    crop_pad_frac: float = Field(0.125, ge=0, lt=1)  # random crop after reflect padding of size * frac
    flip: bool = True
    rotate_deg: float = Field(15.0, ge=0, le=180)
    order: Literal[AUGMENT_ORDERS] = "crop-flip-rotate"  # the three ops, applied left to right
    rotate_interpolation: Literal["bilinear", "nearest"] = "bilinear"
    # true: a model that resizes its images (the ViT's input_size) gets them resized before augmentation, so crop
    # padding and rotation act at that size; false: the stored images are augmented, the model resizes after
    at_input_size: bool = False


class OptimConfig(Section):
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    epochs: int = Field(100, gt=0, le=MAX_EPOCHS)
    batch_size: int = Field(64, gt=0, le=MAX_BATCH)
    warmup_epochs: float = Field(0.0, ge=0, le=MAX_EPOCHS)
    min_lr: float = Field(1e-5, ge=0)  # cosine ends at min(lr * min_lr_ratio, min_lr), as published
    min_lr_ratio: float = Field(0.05, ge=0, le=1)
    # total gradient norm cap per step, 0 = off (the authors' HF Trainer clips at 1.0). It also bounds the feedback
    # between weights and running BN statistics when mixed passes run the student's BN in eval mode
    clip_grad_norm: float = Field(0.0, ge=0, le=1e6)
    # LR after warm-up: "cosine" (published) or "linear" (the HF Trainer's default: the authors' ViT fine-tune),
    # both down to min(lr * min_lr_ratio, min_lr) at the last step
    schedule: Literal["cosine", "linear"] = "cosine"
    # no weight decay on biases and normalisation weights (the HF Trainer's rule: the authors' ViT fine-tune)
    no_decay_norm_bias: bool = False


# The published loss (METHOD.md), defined once: LossConfig's defaults, and what the report calls published.
PUBLISHED_LOSS = {"alpha": 0.4, "temperature": 2.0, "w_sync": 1.0, "w_recon": 1.0, "w_cross": 2.0,
                  "cross_mode": "random"}


class LossConfig(Section):
    """Defaults: the published loss, and BatchNorm in mixed passes as it is served ("eval"; the paper does not
    say; the authors' code ran BN in train mode, "update", which the paper profiles emulate)."""
    alpha: float = Field(PUBLISHED_LOSS["alpha"], ge=0, le=1)  # weight of the hard (label) term
    temperature: float = Field(PUBLISHED_LOSS["temperature"], gt=0)
    w_sync: float = Field(PUBLISHED_LOSS["w_sync"], ge=0)
    w_recon: float = Field(PUBLISHED_LOSS["w_recon"], ge=0)
    w_cross: float = Field(PUBLISHED_LOSS["w_cross"], ge=0)
    cross_mode: Literal[tuple(CROSS_MODES)] = PUBLISHED_LOSS["cross_mode"]  # pwl.schema.objective.CROSS_MODES
    cross_samples: int = Field(2, ge=1, le=64)  # lattice mode: sampled non-prefix states per step
    aux_ramp: float = Field(0.0, ge=0, le=1)  # sync/recon/cross weights rise 0 -> 1 over this fraction of steps
    # student BatchNorm in mixed passes: "update" (batch stats, running stats move), "freeze" (batch stats,
    # running stats kept), "eval" (running stats, as at inference: mixed states trained as they are served)
    mixed_bn_stats: Literal[tuple(MIXED_BN)] = "eval"  # pwl.schema.objective.MIXED_BN


INIT_STUDENT = ("random", "scratch", "pretrained")  # a distilled student's start (pwl.build.init_student)
TEACHER_BN = ("eval", "train")  # the frozen teacher's BatchNorm while it makes the targets (pwl.teacher_bn)
CONVERTER_INITS = ("random", "lstsq")  # how distillation starts the converters (pwl.stitching)


class DistillConfig(Section):
    optim: OptimConfig
    loss: LossConfig = LossConfig()
    converter_lr_scale: float = Field(0.2, gt=0)  # published: converters at 0.2x the lr
    # "random": a fresh student; "scratch": start from the train_student weights; "pretrained": from the weights
    # the student config names (`pretrained` / `pretrained_file`, as the paper's ViT student)
    init_student: Literal[INIT_STUDENT] = "random"
    select_on: Literal["student", "prefix_mean"] = "prefix_mean"  # val score that picks the epoch (pwl.states)
    # the frozen teacher's BatchNorm while it makes the targets (distillation and kd): "eval" (ours) or "train"
    # (the authors': batch statistics, running statistics drifting; pwl.teacher_bn says what all-T then is)
    teacher_bn: Literal[TEACHER_BN] = "eval"
    # the converters' kind (pwl.schema.converters.CONVERTER_KINDS; default: the published linear map)
    converter: ConverterConfig = ConverterConfig()
    # how the converters' linear maps start: "random" (the module's init) or "lstsq", SN-Net's least-squares fit
    # on paired teacher/student activations of the first `converter_fit_images` training images (pwl.stitching)
    converter_init: Literal[CONVERTER_INITS] = "random"
    converter_fit_images: int = Field(4096, ge=16, le=1_000_000)


class KDConfig(Section):
    """Stage kd's recipe: Hinton's knowledge distillation (hard + soft terms only), the control that tells what
    PWL's alignment terms cost the student. conf/config.yaml gives it distill's budget, initialisation, alpha,
    temperature and teacher BN (interpolations of the distill block), so that the two compare like for like."""
    optim: OptimConfig
    init_student: Literal[INIT_STUDENT] = "random"  # as distill.init_student
    alpha: float = Field(PUBLISHED_LOSS["alpha"], ge=0, le=1)  # weight of the hard (label) term
    temperature: float = Field(PUBLISHED_LOSS["temperature"], gt=0)
    teacher_bn: Literal[TEACHER_BN] = "eval"  # as distill.teacher_bn (pwl.teacher_bn)


class ArchConfig(Section):
    teacher: Any
    student: Any
    train_teacher: OptimConfig
    train_student: OptimConfig
    distill: DistillConfig
    kd: KDConfig

    @field_validator("teacher", "student", mode="before")
    @classmethod
    def _family(cls, raw):
        try:
            return parse_model_config(raw)
        except PWLError as e:
            raise ValueError(str(e)) from None

    @model_validator(mode="after")
    def _pairing(self):
        t, s = self.teacher, self.student
        if t.family != s.family:
            raise ValueError(f"teacher is {t.family!r} but student is {s.family!r}: both must be one family")
        if t.num_blocks < 2:
            raise ValueError("PWL needs at least 2 blocks")
        try:  # the same pairing rule the converters enforce: equal block counts, student never wider
            check_pairing(t.block_widths(), s.block_widths())
        except PWLError as e:
            raise ValueError(f"{e.what}: {e.fix}") from None
        for stage in ("distill", "kd"):
            if getattr(self, stage).init_student == "pretrained" and not names_pretrained(s):
                raise ValueError(f"{stage}.init_student is pretrained but the student names no pretrained weights "
                                 "(set student.pretrained or student.pretrained_file, or init_student: random)")
        t.check_student(s)  # the family's own pairing rule, e.g. the ViT's patch size
        check_converter_fits(self.distill.converter.kind, t.family)
        return self


class DeviceProfile(BaseModel):
    """A storage medium: bytes/s of sequential reads, latency to open a file, compute threads, warm-up runs."""

    # finite, and bounded where a value becomes a sleep (bytes / bandwidth, latency) or a count
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    read_bandwidth: float = Field(ge=1e4, description="sequential read rate in bytes/s; at least 10 kB/s")
    open_latency_s: float = Field(0.0, ge=0, le=10, description="seconds to open one file (seek + metadata)")
    threads: int = Field(1, ge=1, le=1024, description="compute threads the device has (capped by this machine's cores)")
    warmup_requests: int = Field(0, ge=0, le=1000, description="untimed forward passes before measuring compute")


def make_profile(raw: dict) -> DeviceProfile:
    """Validate a raw profile dict; errors become one PWLError listing every bad field."""
    try:
        return DeviceProfile.model_validate(raw)
    except ValidationError as e:
        bad = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'profile'}: {x['msg']}" for x in e.errors())
        raise PWLError(f"invalid device profile {raw.get('name', '?')!r}: {bad}",
                       "finite numbers: read_bandwidth >= 1e4 bytes/s, 0 <= open_latency_s <= 10, "
                       "1 <= threads <= 1024, 0 <= warmup_requests <= 1000") from None


class LoadsimConfig(Section):
    """Load-time simulation: storage devices (DeviceProfile fields; "profile" alone means a params profile,
    conf/profile/) and the request stream."""
    devices: dict[str, dict]  # name -> {read_bandwidth, open_latency_s, threads, warmup_requests}
    simulate: list[str] = Field(min_length=1)  # which of `devices` `dvc repro` simulates (the dvc.yaml matrix)
    repeats: int = Field(3, ge=1, le=100)  # runs per strategy; medians and spread are reported
    request_batch: int = Field(1, ge=1, le=MAX_BATCH)  # images per request
    horizon_s: float = Field(0.5, gt=0, le=3600)  # area under accuracy-vs-time over [0, horizon]; scaled below
    horizon_teacher_loads: float = Field(1.5, gt=0, le=100)  # horizon = max(horizon_s, this x teacher-only load time)
    # devices (of those simulated) on which teacher-only and PWL prefix also run over HTTP on loopback (range
    # requests to a local server that delays each request by the latency), beside the file reader
    http_devices: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, raw):
        if isinstance(raw, dict) and "profiles" in raw:  # "profile" is the params profile (conf/profile/)
            raise ValueError(f"loadsim.profiles is now loadsim.simulate: write simulate: {raw['profiles']} (the "
                             "device names of loadsim.devices that dvc repro simulates)")
        return raw

    @model_validator(mode="after")
    def _devices(self):
        for name, raw in self.devices.items():
            try:
                make_profile({"name": name, **raw})
            except PWLError as e:
                raise ValueError(str(e.what)) from None
        unknown = [p for p in self.simulate if p not in self.devices]
        if unknown:
            raise ValueError(f"simulate {unknown} are not defined under loadsim.devices ({sorted(self.devices)})")
        unknown = [p for p in self.http_devices if p not in self.devices]
        if unknown:
            raise ValueError(f"http_devices {unknown} are not defined under loadsim.devices ({sorted(self.devices)})")
        return self

    def device(self, name: str):
        if name not in self.devices:
            raise PWLError(f"unknown device profile {name!r}", f"use one of {sorted(self.devices)}")
        return make_profile({"name": name, **self.devices[name]})


class ComputeConfig(Section):
    """Where training and evaluation run. Under `torchrun --nproc_per_node K` the training stages run K
    data-parallel processes (DDP; the batch sizes stay global); only rank 0 writes outputs."""
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = CUDA when PyTorch sees a GPU
    # autocast for training (pwl.compute.resolve_amp): auto = bfloat16 on a GPU (float16 + gradient scaling
    # without bf16) and on a CPU with native bf16 (AMX-BF16 / AVX512-BF16), float32 elsewhere; bf16 = bfloat16
    # where it is native (an error where it is not); fp16 = float16 + gradient scaling (GPU only); off = float32.
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"  # CNN weights and batches in NHWC; auto = on
    data_on_device: bool = True  # CUDA: whole uint8 splits on the GPU; false = pinned host memory, async copies
    # how dvc.yaml starts the training stages: "python", or "torchrun --standalone --nproc_per_node=K" for DDP
    launcher: str = "python"

    @field_validator("amp", "channels_last", mode="before")
    @classmethod
    def _was_a_switch(cls, v, info):
        """Older params said true/false: true keeps its meaning (auto, on), false (off)."""
        if isinstance(v, bool):
            return ("auto" if info.field_name == "amp" else "on") if v else "off"
        return v

    @field_validator("launcher")
    @classmethod
    def _launcher(cls, v):
        if v.split()[:1] not in (["python"], ["torchrun"]):
            raise ValueError(f"launcher {v!r} must start with python or torchrun")
        return v


class EvalConfig(Section):
    batch_size: int = Field(1000, gt=0, le=MAX_BATCH)


REPORT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # a plain folder name under reports/


class Params(Section):
    profile: str = Field("default", pattern=REPORT_NAME)  # the stages' folder, reports/<profile>/
    name: str = Field("default", pattern=REPORT_NAME)  # this run's report folder, reports/<name>/
    seed: int = Field(0, ge=0, le=SEED_MAX)  # the data split's seed, and the training replica export/loadsim use
    # training replicas (train/kd/distill/evaluate); strict: `seeds: [true]` is no seed 1
    seeds: list[Annotated[int, Field(ge=0, le=SEED_MAX, strict=True)]] = [0]  # empty: see _seeds
    threads: int = Field(0, ge=0, le=MAX_THREADS)  # 0 = every core
    compute: ComputeConfig = ComputeConfig()
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    archs: list[str] = Field(min_length=1)  # an empty list would give the report nothing to compare
    arch: dict[str, ArchConfig]
    eval: EvalConfig = EvalConfig()
    loadsim: Optional[LoadsimConfig] = None

    @model_validator(mode="after")
    def _seeds(self):
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {self.seeds} must be a non-empty list without repeats")
        if self.seed not in self.seeds:
            raise ValueError(f"seeds {self.seeds} must include seed {self.seed}: its replica is the one exported "
                             "and load-simulated")
        return self

    @model_validator(mode="after")
    def _archs(self):
        missing = [a for a in self.archs if a not in self.arch]
        if missing:
            raise ValueError(f"archs lists {missing} but arch has no entry for them (known: {sorted(self.arch)})")
        for name, a in self.arch.items():
            for role in ("teacher", "student"):
                try:  # the family's own rule (pwl.schema.families.FamilyConfig.check_input)
                    getattr(a, role).check_input(self.data.image_size)
                except ValueError as e:
                    raise ValueError(f"arch.{name}.{role}: {e}") from None
        return self

    def for_arch(self, name: str) -> ArchConfig:
        if name not in self.arch:
            raise PWLError(f"unknown arch {name!r}", f"use one of {sorted(self.arch)} or add arch.{name} to params.yaml "
                                                     f"(families: {', '.join(families())})")
        return self.arch[name]


def _format(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {msg}")
    return f"invalid params in {source}:\n" + "\n".join(lines)


def validate_params(raw: dict, source: str = "params") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise PWLError(_format(e, source), "edit the values above (see params.yaml comments and README)") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise PWLError(f"{path} not found", "run from the repository root, where params.yaml lives")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise PWLError(f"{path} is not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r})",
                       "save it as UTF-8, or compose it again: python -m pwl.profile <profile>") from None
    except yaml.YAMLError as e:
        raise PWLError(f"{path} is not valid YAML: {e}", "fix the syntax") from None
    return validate_params(raw or {}, str(path))
