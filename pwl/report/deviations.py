"""How this run's setup differs from the paper's, item by item, generated from the params the run used (and the
data source the prepare stage recorded) for every profile and family: nothing is typed per profile.

The published side is written here once (docs/method.md restates where it comes from: the paper's abstract and
the authors' public code)."""
from dataclasses import dataclass

PAPER_DATA = ("cifar10", "cifar100")


@dataclass(frozen=True)
class Published:
    teacher: str  # the published teacher, in words
    teacher_widths: tuple | None
    teacher_depths: tuple | None
    student_depths: tuple | None
    blocks: int  # N
    pretrained: bool  # teacher ImageNet-pretrained
    epochs: int  # teacher and distillation epochs


PUBLISHED = {
    "vgg": Published("VGG-16-BN layout", (64, 128, 256, 512, 512), (2, 2, 3, 3, 3), (1, 1, 1, 1, 1), 5, False, 100),
    "resnet": Published("ResNet-34 layout (basic blocks)", (32, 64, 128, 256), (3, 4, 6, 3), (1, 1, 1, 1), 4, False,
                        100),
    "vit": Published("ViT-Tiny (dim 192, 12 layers, patch 16 at 224x224)", None, (2, 2, 2, 2, 2, 2),
                     (1, 1, 1, 1, 1, 1), 6, True, 50),
}
PAPER_STATES = 11  # the published prefix, suffix and contiguous tables hold 11 distinct states per family


def _widths(cfg) -> list | None:
    w = getattr(cfg, "widths", None)
    return list(w) if w is not None else ([cfg.dim] if getattr(cfg, "dim", None) else None)


def _converter_words(distill) -> str:
    """The converters' kind and start in words, e.g. 'linear maps over channels, started from the least-squares
    fit on paired activations'."""
    c = distill.converter
    kind = {"linear": "linear maps over channels",
            "conv3x3": f"linear maps + a 3x3 residual bottleneck (x{c.hidden_ratio})",
            "mlp": f"linear maps + a residual token MLP (x{c.hidden_ratio})",
            "lowrank": f"linear maps + a rank-{c.rank} update"}[c.kind]
    start = {"random": "", "lstsq": ", started from the least-squares fit on paired activations (SN-Net)"}
    return kind + start[distill.converter_init]


def rows(params, arch: str, prepared: dict, params_count: dict) -> list[dict]:
    """(item, paper, ours, same) rows for one arch; `params_count`: eval.json's teacher/student/converter_params."""
    a = params.arch[arch]
    t, s, fam = a.teacher, a.student, a.teacher.family
    pub = PUBLISHED.get(fam)
    out = []

    def add(item, paper, ours, same):
        out.append({"item": item, "paper": paper, "ours": ours, "same": "yes" if same else "**no**"})

    ds = params.data.dataset
    add("dataset", "CIFAR-10 and CIFAR-100 (torchvision binaries)", f"{ds} from `{prepared['source']}`",
        ds in PAPER_DATA and "JPEG" not in prepared["source"] and "imagefolder" not in prepared["source"])
    add("training images", "all 50,000; checkpoints picked on the test set",
        f"{prepared['train']:,} for training, {prepared['val']:,} held out to pick checkpoints; test set read once",
        False)
    if pub is None:
        add("family", "not published", fam, False)
        return out
    add("teacher", f"{pub.teacher}, widths {list(pub.teacher_widths) if pub.teacher_widths else 'dim 192'}, "
        f"depths {list(pub.teacher_depths)}", f"widths {_widths(t)}, depths {list(t.depths)}, "
        f"{params_count['teacher_params']:,} parameters",
        pub.teacher_widths is not None and list(pub.teacher_widths) == _widths(t)
        and list(pub.teacher_depths) == list(t.depths))
    same_width = _widths(s) == _widths(t)
    add("student", f"the teacher's widths, depths {list(pub.student_depths)}",
        f"widths {_widths(s)}, depths {list(s.depths)}, {params_count['student_params']:,} parameters",
        same_width and list(s.depths) == list(pub.student_depths) and _widths(t) == list(pub.teacher_widths or []))
    add("converters", "identity (equal widths)",
        "identity (equal widths)" if same_width else
        f"learned {_converter_words(a.distill)}, {params_count['converter_params']:,} parameters", same_width)
    add("blocks N", f"{pub.blocks} (its tables write 4 positions)", str(t.num_blocks), t.num_blocks == pub.blocks)
    pretrained = bool(getattr(t, "pretrained", None) or getattr(t, "pretrained_file", None))
    add("teacher pretrained", "ImageNet-pretrained, fine-tuned" if pub.pretrained else "no (trained from scratch)",
        "yes" if pretrained else "no (trained from scratch)", pretrained == pub.pretrained)
    ep = {"teacher": a.train_teacher.epochs, "student": a.train_student.epochs, "distillation": a.distill.optim.epochs}
    add("epochs", f"{pub.epochs} (teacher and distillation)", ", ".join(f"{k} {v}" for k, v in ep.items()),
        ep["teacher"] == pub.epochs and ep["distillation"] == pub.epochs)
    init = a.distill.init_student
    add("distilled student starts from", "random init (CNNs); an ImageNet student (ViT)",
        {"scratch": f"the trained scratch student ({ep['student']} epochs before distillation)",
         "random": "random init", "pretrained": "pretrained weights"}[init],
        init == ("pretrained" if pub.pretrained else "random"))
    loss = a.distill.loss
    add("cross term", "`random` mask (default), w_cross 2", f"`{loss.cross_mode}`, w_cross {loss.w_cross:g}",
        loss.cross_mode == "random" and loss.w_cross == 2.0)
    add("teacher BatchNorm in distillation", "train mode (statistics drift)", a.distill.teacher_bn + " mode",
        a.distill.teacher_bn == "train")
    add("states evaluated", f"{PAPER_STATES} (prefix, suffix, contiguous tables)", f"all {2 ** t.num_blocks}",
        2 ** t.num_blocks == PAPER_STATES)
    add("replicas", "one run, no spread reported", f"seeds {params.seeds}", len(params.seeds) == 1)
    return out
