"""The streamed linear fit on a local 2-worker Dask cluster gives the local coefficients."""
import numpy as np
import pytest

from pesfit.cli import main
from pesfit.data import load_npz
from pesfit.datasets import shipped_path
from pesfit.models import LinearPIPModel
from pesfit.models import lstsq
from pesfit.models.executors import DaskExecutor, run_on

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def test_dask_fit_gives_the_local_coefficients(cluster, monkeypatch):
    data = load_npz(shipped_path("h2co", "train")).first(400)
    monkeypatch.setattr(lstsq, "BLOCK_BYTES", 8 * 72 * 13 * 30)  # 30 structures a block: several tasks
    params = dict(degree=4, morse_grid=(1.0, 2.0), cv_folds=3)
    with run_on(n_workers=1):
        local = LinearPIPModel(**params).fit(data)
    with distributed.Client(cluster) as client, run_on(client) as executor, \
            distributed.get_task_stream(client) as stream:
        assert isinstance(executor, DaskExecutor)
        remote = LinearPIPModel(**params).fit(data)
    assert len({t["worker"] for t in stream.data}) == 2  # the blocks ran on both workers
    assert remote.hyperparameters_ == local.hyperparameters_
    assert np.linalg.norm(remote.coef_ - local.coef_) <= 1e-10 * np.linalg.norm(local.coef_)
    assert np.allclose([r["cv_energy_rmse_meV"] for r in remote.cv_results_],
                       [r["cv_energy_rmse_meV"] for r in local.cv_results_], rtol=1e-10)


def test_cli_dask_flag(cluster, tmp_path, capsys):
    train = str(shipped_path("h2co", "train"))
    argv = ["fit", "--train", train, "--n-train", "300", "--model", "linear", "--degree", "3", "--morse-a", "1.5",
            "--ridge", "1e-10", "--json", "--quiet"]
    assert main(argv + ["--out", str(tmp_path / "dask.json"), "--dask", cluster.scheduler_address]) == 0
    assert main(argv + ["--out", str(tmp_path / "local.json")]) == 0
    remote, local = (LinearPIPModel.load(tmp_path / f"{name}.json").coef_ for name in ("dask", "local"))
    assert np.linalg.norm(remote - local) <= 1e-10 * np.linalg.norm(local)
    capsys.readouterr()
    assert main(argv + ["--model", "kreg", "--dask", cluster.scheduler_address]) == 2
    assert "--dask runs the streamed linear fits" in capsys.readouterr().err


def test_bad_scheduler_address_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot connect to the Dask scheduler at 'tcp://127.0.0.1:1'"):
        with run_on("tcp://127.0.0.1:1"):
            pass
