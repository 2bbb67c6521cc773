"""pesfit learn: oracle failures, the store, Dask execution (a killed worker, an interrupted run), the loop."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from pesfit.cli import main
from pesfit.learn import DaskExecutor, LearnSettings, Oracle, Store, learn
from pesfit.learn.analytic import BETA, D_EV, leps_energy_forces
from pesfit.learn.design import fragment_samples, hessian_on_oracle, wigner_samples
from pesfit.learn.oracle import PointResult

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # learn_oracles, for this process; workers get it through PYTHONPATH

H2_H = [[0, 0, 0], [0, 0, 0.74], [0, 0, 3.5]]
SADDLE = [[0, 0, 0], [0, 0, 0.93], [0, 0, 1.86]]
FAST = dict(window=1.5, batch=6, n_design=8, members=3, degree=5, fragments=((0, 1), (2,)), separations=(2.5,),
            explore_options={"n_walkers": 16, "n_steps": 40})


def starts():
    return [Atoms("H3", positions=H2_H), Atoms("H3", positions=SADDLE)]


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = tmp_path_factory.mktemp("learn_log") / "calls.txt"
    os.environ["PESFIT_LEARN_TEST_LOG"] = str(path)
    yield path
    os.environ.pop("PESFIT_LEARN_TEST_LOG", None)


@pytest.fixture(scope="module")
def cluster(log):
    """A 2-worker local cluster whose workers can import tests/learn_oracles.py."""
    old = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent), old])
    try:
        with DaskExecutor(n_workers=2) as ex:
            yield ex
    finally:
        os.environ["PYTHONPATH"] = old


def logged_hashes(log) -> list[str]:
    return log.read_text().split() if log.exists() else []


def file_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------ oracle
@pytest.mark.parametrize("factory, reason", [("nan_energy", "not finite"), ("wrong_atoms", "shape (4, 3)"),
                                             ("crashing", "the program crashed")])
def test_oracle_records_failures_after_one_retry(factory, reason):
    res = Oracle(f"learn_oracles:{factory}").compute(["H", "H", "H"], np.array(SADDLE, float))
    assert res.status == "failed" and res.attempts == 2
    assert res.failure.count(reason) == 2 and "second setup" in res.failure
    assert res.energy is None


def test_oracle_retries_with_the_fallback_setup():
    res = Oracle("learn_oracles:flaky").compute(["H", "H", "H"], np.array(SADDLE, float))
    assert res.status == "ok" and res.energy == -2.0 and res.attempts == 2
    assert "SCF did not converge" in res.failure


@pytest.mark.parametrize("spec, message", [
    ("nosuchmodule:factory", "cannot import module 'nosuchmodule'"),
    ("learn_oracles:missing", "has no callable 'missing'"),
    ("learn_oracles:raising_factory", "raised OSError: license server not reachable"),
    ("learn_oracles:not_a_calculator", "not an ASE calculator"),
    ("pyscf:nosuchmethod/cc-pvdz", "unknown method 'nosuchmethod'"),
    ("orca", "must be 'pyscf:METHOD/BASIS' or 'module:factory'"),
])
def test_bad_calculators_are_one_line_errors(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        Oracle(spec).check()
    assert "\n" not in str(info.value)


def test_charge_only_for_pyscf():
    with pytest.raises(ValueError, match="inside the factory"):
        Oracle("learn_oracles:counting_leps", charge=1)
    assert Oracle("pyscf:FCI/cc-pVDZ", multiplicity=2).method == "pyscf:fci/cc-pvdz charge=0 multiplicity=2"


def test_pyscf_methods_and_fallback():
    pytest.importorskip("pyscf")
    from pesfit.abinitio import PySCFCalculator

    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    energies = {}
    for method in ("fci/sto-3g", "ccsd/sto-3g", "ccsd(t)/sto-3g"):
        h2.calc = PySCFCalculator(method)
        energies[method] = h2.get_potential_energy()
    # two electrons: CCSD is exact and (T) adds nothing
    assert energies["ccsd/sto-3g"] == pytest.approx(energies["fci/sto-3g"], abs=2e-5)
    assert energies["ccsd(t)/sto-3g"] == pytest.approx(energies["fci/sto-3g"], abs=2e-5)
    assert "forces" not in PySCFCalculator("fci/sto-3g").implemented_properties
    h3 = Atoms("H3", positions=SADDLE)
    h3.calc = PySCFCalculator("hf/sto-3g", multiplicity=2).fallback()  # atom guess + level shift
    ref = Atoms("H3", positions=SADDLE)
    ref.calc = PySCFCalculator("hf/sto-3g", multiplicity=2)
    assert h3.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-6)
    assert h3.calc.fallback() is None


# ------------------------------------------------------------------- store
def test_store_lookup_refusals_and_export(tmp_path):
    path = tmp_path / "s.db"
    store = Store(path, ["H", "H", "H"], "m1")
    R = np.array(SADDLE, float)
    e, f = leps_energy_forces(R[None])
    assert store.add(R, PointResult("ok", float(e[0]), f[0]), iteration=0, chosen="test")
    assert not store.add(R + 1e-8, PointResult("ok", 0.0), iteration=1, chosen="again")  # same point: a look-up
    assert store.add(R + 0.1, PointResult("failed", failure="boom"), iteration=1, chosen="test")
    assert len(store) == 2 and store.count(status="failed") == 1
    digest = file_digest(path)
    with pytest.raises(ValueError, match="holds H H H, not H H O"):
        Store(path, ["H", "H", "O"], "m1")
    with pytest.raises(ValueError, match="computed with 'm1', not 'm2'"):
        Store(path, ["H", "H", "H"], "m2")
    assert file_digest(path) == digest
    again = Store(path, ["H", "H", "H"], "m1")
    assert len(again) == 2 and store.hash(R) in again
    data = again.dataset()
    assert data.n_structures == 1 and data.E[0] == pytest.approx(e[0]) and np.allclose(data.F[0], f[0])
    assert main(["learn", "export", str(path), "--out", str(tmp_path / "x.npz"), "--json"]) == 0
    from pesfit.data import load_dataset

    assert load_dataset(tmp_path / "x.npz").n_structures == 1
    import ase.db

    foreign = tmp_path / "foreign.db"
    ase.db.connect(str(foreign)).write(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]]))
    with pytest.raises(ValueError, match="not a pesfit learn store"):
        Store(foreign, ["H", "H"], "m1")


# ------------------------------------------------------------------ design
def test_wigner_width_of_h2_matches_the_harmonic_zero_point_width():
    from ase import units

    R0 = np.array([[0, 0, 0], [0, 0, 0.7417], [0, 0, 30.0]])
    H = hessian_on_oracle(Oracle("pesfit.learn.analytic:leps_h3"), ["H", "H", "H"], R0)
    samples = wigner_samples(["H", "H", "H"], R0, H, 0.0, 4000, np.random.default_rng(1))
    r = np.linalg.norm(samples[:, 1] - samples[:, 0], axis=1)
    mu = 1.00794 / 2  # amu
    omega = np.sqrt(2 * D_EV * BETA**2 / mu)
    hbar = units._hbar * units.J * units.s
    assert r.std() == pytest.approx(np.sqrt(hbar / (2 * mu * omega)), rel=0.05)
    assert np.allclose(samples[:, 2], R0[2], atol=1e-9)  # the loose third atom is not sampled


def test_fragment_channels_are_at_the_separation():
    R = np.array([H2_H, SADDLE], float)
    out = fragment_samples(R, [[0, 1], [2]], [2.5, 4.0], np.random.default_rng(0))
    d = np.linalg.norm(out[:, 2] - out[:, :2].mean(axis=1), axis=1)
    assert np.allclose(d, [2.5, 2.5, 4.0, 4.0])
    assert np.allclose(np.linalg.norm(out[:, 1] - out[:, 0], axis=1), [0.74, 0.93, 0.74, 0.93])
    with pytest.raises(ValueError, match="every atom"):
        fragment_samples(R, [[0, 1]], [2.5], np.random.default_rng(0))


# ------------------------------------------------------------ Dask + loop
def test_loop_end_to_end_on_two_workers(cluster, tmp_path):
    assert cluster.n_threads == 2
    store_path = tmp_path / "run.db"
    records = []
    res = learn(Oracle("learn_oracles:counting_leps"), starts(), store_path, LearnSettings(budget=30, **FAST),
                executor=cluster, on_iteration=records.append)
    assert res.stop_reason == "budget" and res.n_calculations == 30 == res.n_computed
    assert [r["iteration"] for r in records] == list(range(1, len(records) + 1))
    assert all(r["batch"] <= 6 and r["disagreement_rms_meV"] > 0 for r in records)
    store = Store(store_path, ["H", "H", "H"], "learn_oracles:counting_leps")
    rows = store.rows()
    assert len({r.point_hash for r in rows}) == len(rows) == 30
    assert {r.chosen.split()[0] for r in rows} >= {"design:start", "design:wigner", "design:fragments", "committee"}
    # the fitted surface is close to the analytic one on the training points
    R = np.array([r.positions for r in store.rows(status="ok")])
    E = leps_energy_forces(R)[0]
    inside = E <= E.min() + 1.5
    assert np.sqrt(np.mean((res.model.predict(R[inside]) - E[inside]) ** 2)) < 0.1


def test_a_killed_worker_costs_only_its_calculation(cluster, tmp_path):
    store_path = tmp_path / "kill.db"
    killed = []

    def progress(step, total, message):
        if message.startswith("iteration 1") and not killed:
            pid = next(iter(cluster.worker_pids().values()))
            os.kill(pid, signal.SIGKILL)  # mid-batch: the other worker is computing
            killed.append(pid)

    records = []
    res = learn(Oracle("learn_oracles:slow_leps"), starts(), store_path,
                LearnSettings(budget=12, **{**FAST, "n_design": 4}), executor=cluster, progress=progress,
                on_iteration=records.append)
    assert killed and res.n_calculations == 12
    rows = Store(store_path, ["H", "H", "H"], "learn_oracles:slow_leps").rows()
    assert len(rows) == 12 and len({r.point_hash for r in rows}) == 12
    assert all(r.status == "ok" for r in rows)  # the lost calculation was resubmitted, not recorded as failed
    assert records[0]["batch"] == 6 and records[0]["batch_failed"] == 0
    deadline = time.time() + 30
    while cluster.n_threads < 2 and time.time() < deadline:  # the nanny restarts the worker
        time.sleep(0.2)


def test_interrupt_and_resume_repeats_nothing(cluster, tmp_path, log):
    store_path = tmp_path / "resume.db"
    oracle = Oracle("learn_oracles:counting_leps")
    settings = LearnSettings(budget=32, **FAST)

    def interrupt(step, total, message):
        if message.startswith("iteration 2") and step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        learn(oracle, starts(), store_path, settings, executor=cluster, progress=interrupt)
    time.sleep(0.5)  # let cancelled in-flight tasks finish before reading the log
    store = Store(store_path, ["H", "H", "H"], oracle.method)
    before = {r.point_hash for r in store.rows()}
    assert 8 < len(before) < 32
    with pytest.raises(ValueError, match="resume it"):
        learn(oracle, starts(), store_path, settings, executor=cluster)
    log.write_text("")
    res = learn(oracle, starts(), store_path, settings, executor=cluster, resume=True)
    computed = logged_hashes(log)
    assert not set(computed) & before  # zero repeated calculations
    assert len(computed) == len(set(computed)) == res.n_computed == 32 - len(before)
    rows = Store(store_path, ["H", "H", "H"], oracle.method).rows()
    assert len(rows) == 32 and before <= {r.point_hash for r in rows}


def test_failed_points_are_recorded_not_dropped(cluster, tmp_path):
    store_path = tmp_path / "nan.db"
    with pytest.raises(ValueError, match="initial design gave 0 successful"):
        learn(Oracle("learn_oracles:nan_energy"), starts(), store_path, LearnSettings(**{**FAST, "n_design": 0}),
              executor=cluster)
    rows = Store(store_path, ["H", "H", "H"], "learn_oracles:nan_energy").rows()
    assert len(rows) == 2 and all(r.status == "failed" and "not finite" in r.failure for r in rows)


# ------------------------------------------------------------------- CLI
def write_start(path):
    import ase.io

    ase.io.write(path, starts())
    return path


def test_cli_runs_on_a_scheduler_and_writes_json_lines_model_and_plot(cluster, tmp_path, capsys):
    start = write_start(tmp_path / "start.xyz")
    address = cluster.client.scheduler.address
    args = ["learn", "--calculator", "learn_oracles:counting_leps", "--start", str(start), "--store",
            str(tmp_path / "c.db"), "--budget", "20", "--window", "1.5", "--batch", "6", "--n-design", "6",
            "--fragments", "0,1 2", "--separations", "2.5", "--members", "3", "--degree", "4",
            "--scheduler", address, "--json", "--quiet"]
    assert main(args) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[-1]["event"] == "finished" and lines[-1]["stop_reason"] == "budget"
    assert lines[-1]["n_calculations"] == 20
    its = [x for x in lines if x["event"] == "iteration"]
    assert its and {"iteration", "n_calculations", "disagreement_rms_meV", "heldout_rmse_meV"} <= set(its[0])
    assert (tmp_path / "c-model.json").is_file() and (tmp_path / "c-learning.png").stat().st_size > 1000
    from pesfit.models import load_model

    assert load_model(tmp_path / "c-model.json").molecule_.symbols == ("H", "H", "H")


@pytest.mark.parametrize("extra, message", [
    (["--calculator", "nosuch:calc"], "cannot import module 'nosuch'"),
    (["--calculator", "learn_oracles:raising_factory"], "raised OSError"),
    (["--calculator", "pyscf:hf/sto-3g", "--multiplicity", "2"], "computed with 'learn_oracles:counting_leps'"),
    (["--calculator", "learn_oracles:counting_leps"], "already holds 1 calculations"),
])
def test_cli_bad_input_is_one_line_and_leaves_the_store(tmp_path, capsys, extra, message):
    start = write_start(tmp_path / "start.xyz")
    store_path = tmp_path / "s.db"
    store = Store(store_path, ["H", "H", "H"], "learn_oracles:counting_leps")
    store.add(np.array(SADDLE, float), PointResult("ok", -4.5), iteration=0, chosen="test")
    digest = file_digest(store_path)
    assert main(["learn", "--start", str(start), "--store", str(store_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert file_digest(store_path) == digest


def test_recipe_learn_section(tmp_path):
    from pesfit.learn.config import load_learn_section

    (tmp_path / "r.toml").write_text('[learn]\ncalculator = "pyscf:mp2/cc-pvdz"\nstart = "s.xyz"\nwindow = 2.0\n'
                                     'target = 1.0\n[learn.explore_options]\nn_steps = 10\n')
    run, settings = load_learn_section(tmp_path / "r.toml")
    assert run["start"] == str(tmp_path / "s.xyz") and settings["explore_options"] == {"n_steps": 10}
    assert LearnSettings(**settings).target == 1.0
    (tmp_path / "bad.toml").write_text('[learn]\ncalculater = "x"\n')
    with pytest.raises(ValueError, match=r"unknown keys \['calculater'\] in \[learn\]"):
        load_learn_section(tmp_path / "bad.toml")
    with pytest.raises(ValueError, match="window must be > 0 eV"):
        LearnSettings(window=-1)
    run, settings = load_learn_section(TESTS.parent / "molecules" / "h3" / "recipe_learn.toml")  # the shipped one
    assert Path(run["start"]).is_file() and LearnSettings(**settings).fragments == ((0, 1), (2,))
    assert Oracle(run["calculator"], multiplicity=run["multiplicity"]).method.startswith("pyscf:fci/cc-pvdz")


@pytest.mark.parametrize("kind, params", [("linear", {}), ("pipnn", {"hidden": (6,), "max_epochs": 5})])
def test_committee_mean_and_spread(kind, params):
    if kind == "pipnn":
        pytest.importorskip("torch")
    from pesfit.data import Dataset
    from pesfit.learn import Committee

    R = fragment_samples(np.array([SADDLE, H2_H], float), [[0], [1], [2]], [1.0, 1.2, 1.4, 1.6, 1.8],
                         np.random.default_rng(3))
    R = np.concatenate([R, fragment_samples(R, [[0, 1], [2]], [1.5, 2.5], np.random.default_rng(4))])
    E, F = leps_energy_forces(R)
    data = Dataset(R=R, z=["H", "H", "H"], E=E, F=F if kind == "linear" else None)
    c = Committee(kind=kind, n_members=3, degree=3, model_params=params).fit(data)
    mean, spread = c.mean_and_spread(R[:5])
    assert mean.shape == spread.shape == (5,) and (spread > 0).all()
    assert np.allclose(c.predict(R[:5]), mean)
    e, f = c.predict(R[0], forces=True)  # as a model for PESCalculator
    assert np.ndim(e) == 0 and f.shape == (3, 3)
    with pytest.raises(ValueError, match="at least 2 members"):
        Committee(n_members=1).fit(data)
