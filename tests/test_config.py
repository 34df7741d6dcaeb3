"""params.yaml schema: valid inputs pass, every bad input fails fast with a specific message."""
import copy
from pathlib import Path

import pytest
import yaml

from pwl.config import Params, load_params, validate_params
from pwl.errors import PWLError

REPO = Path(__file__).resolve().parents[1]


def minimal() -> dict:
    return {"archs": ["v"],
            "arch": {"v": {"teacher": {"family": "vgg", "widths": [8, 16], "depths": [2, 2]},
                           "student": {"family": "vgg", "widths": [4, 8], "depths": [1, 1]},
                           "train_teacher": {}, "train_student": {}, "distill": {"optim": {}}, "kd": {"optim": {}}}}}


VIT = {"teacher": {"family": "vit", "patch_size": 8, "dim": 16, "heads": 2, "depths": [2, 2]},
       "student": {"family": "vit", "patch_size": 8, "dim": 8, "heads": 2, "depths": [1, 1]},
       "train_teacher": {}, "train_student": {}, "distill": {"optim": {}}, "kd": {"optim": {}}}


def test_minimal_params_validate_with_defaults():
    p = validate_params(minimal())
    assert isinstance(p, Params)
    a = p.for_arch("v")
    assert a.teacher.family == "vgg" and a.student.depths == (1, 1)
    assert p.data.dataset == "fashion-mnist" and p.data.image_size == 32
    d = a.distill
    assert (d.optim.optimizer, d.optim.lr, d.optim.momentum, d.optim.weight_decay, d.optim.epochs,
            d.optim.batch_size) == ("sgd", 0.01, 0.9, 5e-4, 100, 64)
    assert (d.loss.alpha, d.loss.temperature, d.loss.w_sync, d.loss.w_recon, d.loss.w_cross,
            d.loss.cross_mode) == (0.4, 2.0, 1.0, 1.0, 2.0, "random")
    assert d.converter_lr_scale == 0.2


# What the paper profiles set beyond the paper's text: the authors' code, emulated (tests/test_recipe.py)
AUTHORS_FIELDS = {"augment": {"order", "rotate_interpolation", "at_input_size"}, "optim": {"clip_grad_norm"},
                  "loss": {"mixed_bn_stats"}}


@pytest.mark.parametrize("profile", ["paper-cifar10", "paper-cifar100"])
def test_schema_defaults_are_what_the_paper_profiles_spell_out(profile, tmp_path):
    """One set of published values: the schema's defaults equal the paper profiles' recipe as composed (keys
    inherited from conf/config.yaml included), but for what the authors' code did beyond the paper's text; the
    CPU profile departs from it in conf/config.yaml, on purpose. The report's "published" loss is the schema's."""
    from pwl.config import PUBLISHED_LOSS, AugmentConfig, DistillConfig, LossConfig, OptimConfig
    from pwl.profile import compose
    assert {k: getattr(LossConfig(), k) for k in PUBLISHED_LOSS} == PUBLISHED_LOSS

    def published(cfg, kind: str) -> dict:
        return cfg.model_dump(exclude=AUTHORS_FIELDS[kind])

    p = compose(profile, out=tmp_path / "params.yaml", conf=REPO / "conf")
    assert published(p.augment, "augment") == published(AugmentConfig(), "augment")
    for name in p.archs:
        a = p.arch[name]
        assert published(a.distill.loss, "loss") == published(LossConfig(), "loss"), name
        assert a.distill.converter_lr_scale == DistillConfig.model_fields["converter_lr_scale"].default
        if a.teacher.family != "vit":  # the ViT is fine-tuned with AdamW (METHOD.md)
            assert all(published(o, "optim") == published(OptimConfig(), "optim")
                       for o in (a.train_teacher, a.train_student, a.distill.optim)), name


def test_vit_params_validate():
    raw = minimal()
    raw["archs"] = ["v", "t"]
    raw["arch"]["t"] = copy.deepcopy(VIT)
    p = validate_params(raw)
    assert p.for_arch("t").student.block_widths() == [8, 8]


def _set(path: str, value):
    def edit(raw):
        *parents, last = path.split(".")
        node = raw
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = value
    return edit


def _vit(edit=None):
    def apply(raw):
        raw["arch"]["v"] = copy.deepcopy(VIT)
        if edit:
            edit(raw)
    return apply


MOBILENET = {"teacher": {"family": "mobilenet", "widths": [8, 16, 16], "depths": [2, 2, 2], "strides": [2, 2, 2]},
             "student": {"family": "mobilenet", "widths": [4, 8, 8], "depths": [1, 1, 1], "strides": [2, 2, 2]},
             "train_teacher": {}, "train_student": {}, "distill": {"optim": {}}, "kd": {"optim": {}}}


def _mobilenet(edit):
    def apply(raw):
        raw["arch"]["v"] = copy.deepcopy(MOBILENET)
        edit(raw)
    return apply


BAD = [
    ("unknown family", _set("arch.v.teacher.family", "alexnet"), "unknown architecture family 'alexnet'"),
    ("mixed families", _set("arch.v.student", {"family": "resnet", "widths": [4, 8], "depths": [1, 1]}),
     "both must be one family"),
    ("unknown dataset", _set("data.dataset", "mnist"), "data.dataset"),
    ("unknown dataset message", _set("data.dataset", "mnist"),
     "'fashion-mnist', 'cifar10', 'cifar100' or 'imagefolder'"),
    ("imagefolder without root", _set("data.dataset", "imagefolder"), "data.dataset=imagefolder needs data.root"),
    ("channels", _set("data.channels", 2), "data.channels: Input should be 1 or 3"),
    ("zero epochs", _set("arch.v.train_teacher.epochs", 0), "train_teacher.epochs: Input should be greater than 0"),
    ("negative epochs", _set("arch.v.distill.optim.epochs", -3), "distill.optim.epochs: Input should be greater than 0"),
    ("zero lr", _set("arch.v.train_student.lr", 0), "train_student.lr: Input should be greater than 0"),
    ("negative lr", _set("arch.v.train_student.lr", -0.1), "train_student.lr: Input should be greater than 0"),
    ("zero batch", _set("arch.v.train_teacher.batch_size", 0), "batch_size: Input should be greater than 0"),
    ("negative w_sync", _set("arch.v.distill.loss.w_sync", -1), "w_sync: Input should be greater than or equal to 0"),
    ("negative w_recon", _set("arch.v.distill.loss.w_recon", -1), "w_recon: Input should be greater than or equal"),
    ("negative w_cross", _set("arch.v.distill.loss.w_cross", -0.5), "w_cross: Input should be greater than or equal"),
    ("alpha > 1", _set("arch.v.distill.loss.alpha", 1.5), "alpha: Input should be less than or equal to 1"),
    ("alpha < 0", _set("arch.v.distill.loss.alpha", -0.1), "alpha: Input should be greater than or equal to 0"),
    ("zero temperature", _set("arch.v.distill.loss.temperature", 0), "temperature: Input should be greater than 0"),
    ("negative temperature", _set("arch.v.distill.loss.temperature", -2), "temperature: Input should be greater"),
    ("block counts", _set("arch.v.student", {"family": "vgg", "widths": [4, 8, 8], "depths": [1, 1, 1]}),
     "teacher has 2 blocks but student has 3"),
    ("widths vs depths", _set("arch.v.teacher.depths", [2]), "widths has 2 entries but depths has 1"),
    ("single block", lambda r: r["arch"]["v"].update(
        teacher={"family": "vgg", "widths": [8], "depths": [2]}, student={"family": "vgg", "widths": [4], "depths": [1]}),
     "at least 2 blocks"),
    ("student wider", _set("arch.v.student.widths", [4, 32]), "student is wider than the teacher at block(s) [2]"),
    ("vit student wider", _vit(_set("arch.v.student.dim", 32)), "student is wider than the teacher at block(s) [1, 2]"),
    ("vit patch mismatch", _vit(_set("arch.v.student.patch_size", 4)), "same patch_size"),
    ("vit input mismatch", _vit(_set("arch.v.teacher.input_size", 64)), "same input_size"),
    ("vit heads", _vit(_set("arch.v.teacher.heads", 3)), "dim 16 is not divisible by heads 3"),
    ("vit image/patch", _vit(_set("data.image_size", 36)), "input size 36 is not divisible by patch_size 8"),
    ("vgg image/2^N", _set("data.image_size", 30), "image_size 30 is not divisible by 2^2"),
    ("vgg deep image/2^N", lambda r: r["arch"]["v"].update(
        teacher={"family": "vgg", "widths": [8] * 6, "depths": [1] * 6},
        student={"family": "vgg", "widths": [4] * 6, "depths": [1] * 6}), "not divisible by 2^6"),
    ("mobilenet image/strides", _mobilenet(_set("data.image_size", 36)),
     "arch.v.teacher: image_size 36 is not divisible by 8 (the product of strides)"),
    ("mobilenet stride pairing", _mobilenet(_set("arch.v.student.strides", [1, 1, 2])), "need the same strides"),
    ("unknown top key", _set("epochs", 3), "epochs: Extra inputs are not permitted"),
    ("unknown loss key", _set("arch.v.distill.loss.beta", 3), "beta: Extra inputs are not permitted"),
    ("unknown model key", _set("arch.v.teacher.kernel", 5), "kernel"),
    ("archs without entry", _set("archs", ["v", "w"]), "archs lists ['w'] but arch has no entry"),
    ("cross_mode", _set("arch.v.distill.loss.cross_mode", "prefix"), "cross_mode: Input should be 'random', 'all'"),
    ("bn stats", _set("arch.v.distill.loss.mixed_bn_stats", "drift"), "mixed_bn_stats"),
    ("optimizer", _set("arch.v.train_teacher.optimizer", "adam"), "optimizer: Input should be 'sgd' or 'adamw'"),
    ("val_size", _set("data.val_size", 0), "val_size: Input should be greater than 0"),
    ("missing archs", lambda r: r.pop("archs"), "archs: Field required"),
    ("missing distill optim", _set("arch.v.distill", {}), "optim: Field required"),
    # every float finite; bounds where a value becomes a sleep, a size or a count; seeds every generator takes
    ("inf lr", _set("arch.v.train_teacher.lr", float("inf")), "train_teacher.lr: Input should be a finite number"),
    ("nan w_sync", _set("arch.v.distill.loss.w_sync", float("nan")), "w_sync: Input should be a finite number"),
    ("inf w_sync string", _set("arch.v.distill.loss.w_sync", "inf"), "w_sync: Input should be a finite number"),
    ("inf mlp_ratio", _vit(_set("arch.v.teacher.mlp_ratio", float("inf"))), "mlp_ratio: Input should be a finite"),
    ("inf latency", _set("loadsim", {"devices": {"sd": {"read_bandwidth": 2e7, "open_latency_s": float("inf")}},
                                     "simulate": ["sd"]}), "open_latency_s: Input should be a finite number"),
    ("huge latency", _set("loadsim", {"devices": {"sd": {"read_bandwidth": 2e7, "open_latency_s": 1e9}},
                                      "simulate": ["sd"]}), "open_latency_s: Input should be less than or equal to 10"),
    ("tiny bandwidth", _set("loadsim", {"devices": {"sd": {"read_bandwidth": 1e-300}}, "simulate": ["sd"]}),
     "read_bandwidth: Input should be greater than or equal to 10000"),
    ("huge horizon", _set("loadsim", {"devices": {}, "simulate": [], "horizon_s": 1e12}), "horizon_s"),
    ("huge seed", _set("seed", 10 ** 20), "seed: Input should be less than or equal to 4294967295"),
    ("seed not a replica", _set("seed", 3), "seeds [0] must include seed 3"),
    ("repeated seeds", _set("seeds", [0, 0]), "must be a non-empty list without repeats"),
    ("no seeds", _set("seeds", []), "must be a non-empty list without repeats"),
    ("negative replica", _set("seeds", [0, -1]), "seeds.1: Input should be greater than or equal to 0"),
    ("report name", _set("name", "../elsewhere"), "name: String should match pattern"),
    ("negative seed", _set("seed", -1), "seed: Input should be greater than or equal to 0"),
    ("huge threads", _set("threads", 10 ** 6), "threads: Input should be less than or equal to 1024"),
    ("huge image", _set("data.image_size", 10 ** 6), "image_size: Input should be less than or equal to 2048"),
    ("huge batch", _set("arch.v.train_teacher.batch_size", 10 ** 9), "batch_size: Input should be less than"),
    ("huge epochs", _set("arch.v.train_teacher.epochs", 10 ** 9), "epochs: Input should be less than"),
]


@pytest.mark.parametrize("name,edit,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_params(name, edit, needle):
    raw = minimal()
    edit(raw)
    with pytest.raises(PWLError) as err:
        validate_params(raw, "test.yaml")
    assert needle in str(err.value), str(err.value)
    assert "invalid params in test.yaml" in str(err.value)


def test_unknown_arch_lookup():
    p = validate_params(minimal())
    with pytest.raises(PWLError, match="unknown arch 'nope'"):
        p.for_arch("nope")


def test_params_are_frozen():
    p = validate_params(minimal())
    with pytest.raises(Exception):
        p.seed = 3


def test_repo_params_yaml_validates():
    p = load_params(REPO / "params.yaml")
    assert p.archs and all(p.for_arch(a).teacher.num_blocks == p.for_arch(a).student.num_blocks for a in p.archs)


def test_load_params_file_errors(tmp_path):
    with pytest.raises(PWLError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("archs: [v\n  : :")
    with pytest.raises(PWLError, match="not valid YAML"):
        load_params(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(PWLError, match="archs: Field required"):
        load_params(empty)


def test_validating_params_imports_no_torch_code():
    """pwl.config (and pwl.stage_cli, which every stage imports to validate params) load no torch and none of the
    model, loss or mixing code: their names and schemas come from pwl.schema. Otherwise every stage would
    depend on pwl/losses.py, and a loss edit would rerun prepare and the teachers (tests/test_dvc_deps.py)."""
    import subprocess
    import sys
    code = ("import sys, pwl.config, pwl.stage_cli; pwl.config.load_params('params.yaml'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m in "
            "('pwl.models', 'pwl.losses', 'pwl.mixing', 'pwl.compute', 'pwl.data')))")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", f"validating params imported {res.stdout.strip()}"


def test_the_schema_and_the_code_know_the_same_names():
    """The torch-free names (pwl.schema) and their implementations agree: every cross mode, BN mode and model
    family params may name has its code, and no code is unreachable from params."""
    from pwl.losses import CROSS_MODES, MIXED_BN
    from pwl.models import builders, families
    from pwl.schema import objective
    assert set(CROSS_MODES) == set(objective.CROSS_MODES)
    assert set(MIXED_BN) == set(objective.MIXED_BN)
    assert builders() == families()


def test_the_renamed_loadsim_key_says_its_new_name():
    """`loadsim.profiles` (a name the params profile already has) is now `loadsim.simulate`: the old key is an
    error that names the new one."""
    raw = {**minimal(), "loadsim": {"devices": {"sd": {"read_bandwidth": 1e7}}, "profiles": ["sd"]}}
    with pytest.raises(PWLError, match=r"loadsim.profiles is now loadsim.simulate: write simulate: \['sd'\]"):
        validate_params(raw)
    raw["loadsim"]["simulate"] = raw["loadsim"].pop("profiles")
    assert validate_params(raw).loadsim.simulate == ["sd"]
