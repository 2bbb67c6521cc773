"""The user guide's shell commands run as written (so the docs cannot rot).

A fenced ``bash`` block preceded by ``<!-- runnable -->`` (optionally
``<!-- runnable requires=gfortran,py:pyvibdmc -->``: programs on PATH or
importable modules) is executed; the blocks of one page run in order in one
scratch directory containing a link to ``molecules/``.  ``pesfit`` and
``python`` there are this checkout, whatever is installed, run by the
interpreter of a virtual environment made for the test (most users install
into one).
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARK = re.compile(r"^<!--\s*runnable(?:\s+requires=(?P<req>[\w.:,\-]+))?\s*-->\s*$")


def runnable_blocks(text: str) -> list[tuple[list[str], str, int]]:
    """``(requirements, code, line)`` of every marked bash block."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        m = MARK.match(line.strip())
        if not m:
            continue
        if i + 1 >= len(lines) or lines[i + 1].strip() != "```bash":
            raise ValueError(f"line {i + 1}: a runnable marker must be followed by a ```bash block")
        end = next(k for k in range(i + 2, len(lines)) if lines[k].strip() == "```")
        req = [r for r in (m.group("req") or "").split(",") if r]
        out.append((req, "\n".join(lines[i + 2:end]), i + 1))
    return out


def missing(requirements) -> list[str]:
    miss = []
    for r in requirements:
        if r.startswith("py:"):
            if importlib.util.find_spec(r[3:]) is None:
                miss.append(r)
        elif shutil.which(r) is None:
            miss.append(r)
    return miss


def test_marker_parsing():
    text = ("x\n<!-- runnable requires=gcc,py:numpy -->\n```bash\necho 1\necho 2\n```\n"
            "<!-- runnable -->\n```bash\nls\n```")
    assert runnable_blocks(text) == [(["gcc", "py:numpy"], "echo 1\necho 2", 2), ([], "ls", 7)]
    with pytest.raises(ValueError, match="must be followed"):
        runnable_blocks("<!-- runnable -->\n```python\nx\n```")


PAGES = sorted(DOCS.glob("*.md"))


def test_guide_has_runnable_commands():
    assert {p.name for p in PAGES} >= {"README.md", "quickstart.md", "using.md", "backends.md", "formats.md",
                                       "symmetry.md", "export.md", "troubleshooting.md"}
    assert len(runnable_blocks((DOCS / "quickstart.md").read_text())) >= 4


def test_links_resolve():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", page.read_text()):
            assert (DOCS / target).is_file(), f"{page.name} links to missing {target}"


def make_venv(path: Path) -> Path:
    """A virtual environment at ``path`` that sees this interpreter's packages; returns its ``python``.

    Made ``--without-pip`` (no network); a ``.pth`` file adds this interpreter's site directories
    (their own ``.pth`` files included), so it works whether the tests run on a system Python or
    inside a virtual environment (whose base interpreter may lack the packages).
    """
    import site

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, capture_output=True)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    user = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []
    dirs = [d for d in site.getsitepackages() + user if os.path.isdir(d)]
    (Path(purelib) / "_outer_site.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs) + "\n")
    return python


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory) -> Path:
    """The runnable docs run under a virtual environment's interpreter, as most users' do."""
    return make_venv(tmp_path_factory.mktemp("venv") / "v")


def run_blocks(blocks, tmp_path: Path, python, where: str) -> int:
    """Run ``(requirements, code, line)`` blocks in order in one scratch directory; number run.

    ``pesfit`` and ``python`` there are wrapper scripts that ``exec`` the interpreter ``python``
    (a symbolic link to a virtual environment's ``python`` would start its base interpreter).
    """
    bin_dir = tmp_path / "_bin"
    bin_dir.mkdir()
    for name, args in (("pesfit", '-m pesfit.cli "$@"'), ("python", '"$@"')):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{python}" {args}\n')
        (bin_dir / name).chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    (work / "molecules").symlink_to(ROOT / "molecules")
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", MPLBACKEND="Agg")
    ran = 0
    for req, code, line in blocks:
        if missing(req):
            continue
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, (f"{where}, block at line {line} failed ({proc.returncode}):\n{code}\n"
                                      f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
        ran += 1
    return ran


def test_docs_python_is_the_venv(venv_python, tmp_path):
    """Inside the scratch directory ``python`` and ``pesfit`` run the venv's interpreter with its packages."""
    block = ('python -c "import sys; print(sys.prefix)" > prefix.txt\n'
             'pesfit --version > version.txt\npython -c "import ase, numpy, pesfit"\n'
             # the quickstart's link to the shipped data, made from a scratch directory
             "python -c 'from pesfit.datasets import MOLECULES_DIR; print(MOLECULES_DIR)' > molecules.txt")
    assert run_blocks([([], block, 0)], tmp_path, venv_python, "venv check") == 1
    work = tmp_path / "work"
    assert Path((work / "prefix.txt").read_text().strip()).resolve() == venv_python.parent.parent.resolve()
    assert (work / "version.txt").read_text().startswith("pesfit ")
    assert Path((work / "molecules.txt").read_text().strip()) == ROOT / "molecules"


@pytest.mark.parametrize("page", [p for p in PAGES if runnable_blocks(p.read_text())], ids=lambda p: p.name)
def test_runnable_commands(page, tmp_path, venv_python):
    ran = run_blocks(runnable_blocks(page.read_text()), tmp_path, venv_python, page.name)
    if ran == 0:
        pytest.skip(f"{page.name}: every runnable block needs something missing here")
