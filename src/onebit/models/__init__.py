from . import resnet, wrn  # noqa: F401  (registers the models)
from .registry import MODELS, create_model, has_depth_width, list_models, register_model

__all__ = ["MODELS", "create_model", "has_depth_width", "list_models", "register_model"]
