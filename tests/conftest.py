"""Shared fixtures: a small, quickly fitted h2co linear model and its file."""
import pytest

from pesfit.datasets import shipped_dataset
from pesfit.models import LinearPIPModel


@pytest.fixture(scope="session")
def h2co_small_model():
    """Linear PIP, degree 5, first 1000 h2co structures, energies only (about 1 s)."""
    data = shipped_dataset("h2co", "train").first(1000)._replace(F=None)
    return LinearPIPModel(degree=5, morse_a=1.0, ridge=1e-10).fit(data)


@pytest.fixture(scope="session")
def h2co_small_model_file(h2co_small_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("h2co_model") / "h2co.json"
    h2co_small_model.save(path)
    return path
