"""The user guide's shell commands run as written (so the docs cannot rot).

A fenced ``bash`` block preceded by ``<!-- runnable -->`` (optionally
``<!-- runnable requires=gfortran,py:pyvibdmc -->``: programs on PATH or
importable modules) is executed; the blocks of one page run in order in one
scratch directory containing a link to ``molecules/``.  ``pesfit`` and
``python`` there are this checkout, whatever is installed.
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


@pytest.mark.parametrize("page", [p for p in PAGES if runnable_blocks(p.read_text())], ids=lambda p: p.name)
def test_runnable_commands(page, tmp_path):
    bin_dir = tmp_path / "_bin"
    bin_dir.mkdir()
    (bin_dir / "pesfit").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pesfit.cli "$@"\n')
    (bin_dir / "pesfit").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    work = tmp_path / "work"
    work.mkdir()
    (work / "molecules").symlink_to(ROOT / "molecules")
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", MPLBACKEND="Agg")
    ran = 0
    for req, code, line in runnable_blocks(page.read_text()):
        if missing(req):
            continue
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, (f"{page.name}, block at line {line} failed ({proc.returncode}):\n{code}\n"
                                      f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
        ran += 1
    if ran == 0:
        pytest.skip(f"{page.name}: every runnable block needs something missing here")
