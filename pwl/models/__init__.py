"""Model families (nn.Modules). Importing this package registers every family's builder; the families'
option schemas and names are torch-free, in pwl.schema.families (re-exported here for the model code's users)."""
from ..schema.families import families, names_pretrained, parse_model_config
from . import mobilenet, resnet, vgg, vit  # noqa: F401  (registration side effects)
from .blocknet import BlockNet
from .registry import build_model, builders, get_family, init_pretrained

__all__ = ["BlockNet", "build_model", "builders", "families", "get_family", "init_pretrained", "names_pretrained",
           "parse_model_config"]
