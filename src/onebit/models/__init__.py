"""The registered networks. The built-in ones are named by reference (their modules, and
PyTorch, are imported when one is built)."""

from ..methods.base import Ref
from .registry import (
    DEPTH_WIDTH,
    LABELS,
    MODELS,
    create_model,
    has_depth_width,
    list_models,
    model_label,
    register_model,
)

register_model("wrn", Ref("onebit.models.wrn:wrn"), label="WRN-{depth}-{width:g}", depth_width=True)
register_model(
    "wrn_imagenet", Ref("onebit.models.wrn:wrn_imagenet"), label="WRN-{depth}-{width:g} (ImageNet)", depth_width=True
)
register_model("resnet18", Ref("onebit.models.resnet:resnet18"), label="ResNet-18", depth_width=False)

__all__ = [
    "DEPTH_WIDTH",
    "LABELS",
    "MODELS",
    "create_model",
    "has_depth_width",
    "list_models",
    "model_label",
    "register_model",
]
