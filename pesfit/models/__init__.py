"""Back ends: each fits a Dataset and predicts energies and forces."""
from ._base import ModelBase, load_model
from .linear import LinearPIPModel

__all__ = ["LinearPIPModel", "ModelBase", "load_model", "make_model"]


def make_model(name: str, **params) -> ModelBase:
    """Model by CLI name (``linear``)."""
    models = {"linear": LinearPIPModel}
    if name not in models:
        raise ValueError(f"unknown model {name!r}; available: {sorted(models)}")
    return models[name](**params)
