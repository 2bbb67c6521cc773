"""Back ends: each fits a Dataset and predicts energies and forces.

Every back end subclasses :class:`ModelBase` and sets ``cli_name`` (the value
of ``pesfit fit --model``); importing its module registers it.
"""
from ._base import ModelBase, load_model, registered_models
from .diabatic import DiabaticModel
from .fragments import FragmentedPIPModel
from .kernels import GPRModel, KREGModel, PKREGModel, SGDMLModel
from .linear import LinearPIPModel
from .manybody import ManyBodyModel
from .nn import FINNModel, PIPNNModel

__all__ = ["DiabaticModel", "FINNModel", "FragmentedPIPModel", "GPRModel", "KREGModel", "LinearPIPModel",
           "ManyBodyModel", "ModelBase", "PIPNNModel", "PKREGModel", "SGDMLModel", "load_model", "make_model",
           "registered_models"]


def make_model(name: str, **params) -> ModelBase:
    """Model by CLI name (``linear``, ...), constructed with hyperparameters ``params``."""
    models = registered_models()
    if name not in models:
        raise ValueError(f"unknown model {name!r}; available: {sorted(models)}")
    return models[name](**params)
