"""Model families. Importing this package registers every family."""
from . import mobilenet, resnet, vgg, vit  # noqa: F401  (registration side effects)
from .blocknet import BlockNet
from .registry import build_model, families, get_family, init_pretrained, names_pretrained, parse_model_config

__all__ = ["BlockNet", "build_model", "families", "get_family", "init_pretrained", "names_pretrained",
           "parse_model_config"]
