"""Streamed QR least squares: identities against the plain in-memory QR, fold factors, bounded blocks."""
import tracemalloc

import numpy as np
import pytest

from invariants import DistanceTransform
from pesfit.data import load_npz
from pesfit.datasets import shipped_path
from pesfit.models import FragmentedPIPModel, LinearPIPModel
from pesfit.models import _reference as ref
from pesfit.models.executors import LocalExecutor
from pesfit.models.linear import PIPDesignRows
from pesfit.models.lstsq import (FoldFactors, RowFactor, factor_blocks, fold_labels, lstsq_path, plan_tasks,
                                 ridge_path)

RIDGES = [0.0, 1e-12, 1e-8, 1e-4]


def _problem(n=3000, p=14, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=n)
    A = np.vander(x, p, increasing=True) * np.logspace(0, 6, p)  # badly scaled, badly conditioned columns
    y = np.sin(3 * x) + 1e-3 * rng.normal(size=n)
    return A, y


def test_blocked_factor_gives_the_in_memory_ridge_path():
    A, y = _problem()
    expected = ref.weighted_lstsq_path(A, y, RIDGES)
    factor = RowFactor(A.shape[1] + 1)
    for s in range(0, len(y), 701):  # uneven blocks
        factor.add(np.column_stack([A[s:s + 701], y[s:s + 701]]))
    assert factor.n_rows == len(y)
    for c, e in zip(ridge_path(factor, RIDGES), expected):
        assert np.linalg.norm(c - e) <= 1e-8 * np.linalg.norm(e)
    for c, e in zip(lstsq_path(A, y, RIDGES, block_bytes=8 * 15 * 500), expected):
        assert np.linalg.norm(c - e) <= 1e-8 * np.linalg.norm(e)


def test_factor_identities():
    A, y = _problem(n=500, p=12)
    M = np.column_stack([A, y])
    f = RowFactor(13).add(M[:200])
    g = RowFactor(13).add(M[200:])
    merged = RowFactor.combine([f, g])
    assert np.allclose(merged.R.T @ merged.R, M.T @ M, rtol=1e-10, atol=1e-10 * np.abs(M.T @ M).max())
    assert np.allclose(np.triu(merged.R), merged.R)
    c = np.random.default_rng(1).normal(size=(3, 12))
    assert np.allclose(merged.residual_sse(c), [np.sum((A @ ci - y) ** 2) for ci in c], rtol=1e-10)
    with pytest.raises(ValueError, match=r"rows must have shape \(m, 13\)"):
        f.add(M[:, :5])


def test_fewer_rows_than_columns_matches_the_minimum_norm_solution():
    A, y = _problem(n=8, p=12)
    expected = ref.weighted_lstsq_path(A, y, [0.0, 1e-6])
    got = ridge_path(RowFactor(13).add(np.column_stack([A, y])), [0.0, 1e-6])
    for c, e in zip(got, expected):
        assert np.linalg.norm(c - e) <= 1e-8 * np.linalg.norm(e)


def test_fold_factors_give_the_refactored_cv():
    A, y = _problem(n=900, p=15)
    labels = fold_labels(len(y), 3, 0)
    ff = FoldFactors.empty(3, 16, 16)
    for k in range(3):
        ff.train[k].add(np.column_stack([A, y])[labels == k])
        ff.val[k].add(np.column_stack([A, y])[labels == k])
    expected = np.zeros(len(RIDGES))
    for k in range(3):
        tr, va = labels != k, labels == k
        for j, c in enumerate(ref.weighted_lstsq_path(A[tr], y[tr], RIDGES)):
            expected[j] += np.sum((A[va] @ c - y[va]) ** 2)
    assert np.allclose(ff.cv_sse(RIDGES), expected, rtol=1e-8)


@pytest.fixture(scope="module")
def h2co():
    return load_npz(shipped_path("h2co", "train")).first(600)


def test_linear_fit_equals_the_in_memory_fit_and_cv(h2co):
    model = LinearPIPModel(degree=4, morse_grid=(1.0, 2.0), cv_folds=3).fit(h2co)
    w = np.ones(h2co.n_structures)
    folds = np.array_split(np.random.default_rng(0).permutation(h2co.n_structures), 3)
    results = []
    for a in (1.0, 2.0):
        rmse = ref.linear_cv(model.basis_, a, [0.0, 1e-12, 1e-10, 1e-8, 1e-6], h2co.R, h2co.E, h2co.F, w, 0.1,
                             folds)
        results += [(a, lam, r) for lam, r in zip([0.0, 1e-12, 1e-10, 1e-8, 1e-6], rmse)]
    got = [(r["morse_a"], r["ridge"], r["cv_energy_rmse_meV"]) for r in model.cv_results_]
    assert [g[:2] for g in got] == [r[:2] for r in results]
    assert np.allclose([g[2] for g in got], [r[2] for r in results], rtol=1e-6)
    a, lam, _ = min(results, key=lambda r: r[2])
    assert (model.hyperparameters_["morse_a"], model.hyperparameters_["ridge"]) == (a, lam)
    A, y = ref.linear_design(model.basis_, DistanceTransform("morse", a), h2co.R, h2co.E, h2co.F, w, 0.1)
    expected = ref.weighted_lstsq_path(A, y, [lam])[0]
    assert np.linalg.norm(model.coef_ - expected) <= 1e-8 * np.linalg.norm(expected)


def test_fragmented_fit_equals_the_in_memory_fit(h2co):
    model = FragmentedPIPModel(fragments=[[0, 1, 2, 3]], degree=3, morse_a=1.5, ridge=1e-10).fit(h2co)
    A, y = ref.linear_design(model.basis_, DistanceTransform("morse", 1.5), h2co.R, h2co.E, h2co.F,
                             np.ones(h2co.n_structures), 0.1)
    expected = ref.weighted_lstsq_path(A, y, [1e-10])[0]
    assert np.linalg.norm(model.coef_ - expected) <= 1e-8 * np.linalg.norm(expected)


def _rows(data, model, with_forces=True):
    from invariants import pip_basis

    basis = pip_basis(model.molecule_group(data), 4)
    return PIPDesignRows(basis, DistanceTransform("morse", 1.0), data.R, data.E, data.F if with_forces else None,
                         np.ones(data.n_structures), 0.1, True)


def test_blocks_are_bounded_and_memory_does_not_grow_with_the_data(h2co):
    rows = _rows(h2co, LinearPIPModel())
    block_bytes = 8 * rows.n_columns * rows.rows_per_structure * 80  # 80 structures per block
    tasks = plan_tasks(600, rows.rows_per_structure, rows.n_columns, 3, block_bytes=block_bytes)
    assert max(b - a for t in tasks for a, b in t) == 80
    assert [b for t in tasks for b in t][0][0] == 0 and tasks[-1][-1][1] == 600

    more = load_npz(shipped_path("h2co", "train")).first(2400)

    def peak(n):
        data = more.first(n)
        sub = _rows(data, LinearPIPModel())
        plan = plan_tasks(n, sub.rows_per_structure, sub.n_columns, 3, block_bytes=block_bytes)
        labels = fold_labels(n, 3, 0)
        tracemalloc.start()
        factor_blocks(sub, plan, labels, 3, sub.n_columns, sub.n_columns, executor=LocalExecutor(1))
        out = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return out

    peak(150)  # compiles the kernels
    assert peak(2400) <= 1.1 * peak(600)


def test_thread_count_does_not_change_the_factors(h2co):
    rows = _rows(h2co, LinearPIPModel())
    plan = plan_tasks(600, rows.rows_per_structure, rows.n_columns, 3,
                      block_bytes=8 * rows.n_columns * rows.rows_per_structure * 40)
    labels = fold_labels(600, 3, 0)
    one, two = (factor_blocks(rows, plan, labels, 3, rows.n_columns, rows.n_columns, executor=LocalExecutor(k))
                for k in (1, 2))
    assert len(plan) >= 2
    for a, b in zip(one.train + one.val, two.train + two.val):
        assert np.array_equal(a.R, b.R) and a.n_rows == b.n_rows


def test_memory_mapped_npz_and_blockwise_xyz_give_the_same_fit(h2co, tmp_path):
    import zipfile

    from pesfit.data import load_xyz, npz_memmap, save_npz, save_xyz, xyz_to_npz

    data = h2co.first(200)
    save_npz(data, tmp_path / "d.npz")
    mapped = load_npz(tmp_path / "d.npz", mmap=True)
    assert isinstance(mapped.R, np.memmap) and isinstance(mapped.F, np.memmap)
    assert npz_memmap(shipped_path("h2co", "train"), "R") is None  # compressed: read as usual
    assert isinstance(load_npz(shipped_path("h2co", "train"), mmap=True).R, np.ndarray)
    params = dict(degree=3, morse_a=1.5, ridge=1e-10)
    expected = LinearPIPModel(**params).fit(data).coef_
    assert np.array_equal(LinearPIPModel(**params).fit(mapped).coef_, expected)
    save_xyz(data, tmp_path / "d.xyz")
    assert xyz_to_npz(tmp_path / "d.xyz", tmp_path / "x.npz", block_size=64) == 200
    with zipfile.ZipFile(tmp_path / "x.npz") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
    converted = load_npz(tmp_path / "x.npz", mmap=True)
    direct = load_xyz(tmp_path / "d.xyz")
    assert isinstance(converted.R, np.memmap)
    for key in ("R", "E", "F"):
        assert np.array_equal(getattr(converted, key), getattr(direct, key))
    text = (tmp_path / "d.xyz").read_text().splitlines()
    text[text.index(text[0], 1) + 2] = text[text.index(text[0], 1) + 2].replace("C", "N", 1)
    (tmp_path / "bad.xyz").write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match="structure 1 has elements"):
        xyz_to_npz(tmp_path / "bad.xyz", tmp_path / "bad.npz")


def test_library_limits_blas_threads_in_small_solves(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    from pesfit.models import DiabaticModel
    from pesfit.models import diabatic as diabatic_module

    seen = []
    design = diabatic_module.design

    def recording(*args, **kw):
        seen.append(max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"))
        return design(*args, **kw)

    monkeypatch.setattr(diabatic_module, "design", recording)
    train = load_npz(shipped_path("nh3_dpem", "train")).first(200)
    with threadpool_limits(limits=2, user_api="blas"):  # what the environment would give
        DiabaticModel(irreps="A1,A2", degree=2, morse_a=1.5, ridge=0.0, variables="distances").fit(train)
        after = max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
    assert seen and set(seen) == {1}
    assert after == 2  # restored after the fit
