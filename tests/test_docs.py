"""The pages a user reads: every Python and R code block of the README and
of docs/ runs as written, and no link points outside the repository.

A page's Python blocks run one after the other in one fresh process, as a
reader pastes them, in a scratch folder that holds the repository's inst/
(the forecasting page reads the bundled series from there). Its R blocks
run in Rscript with this checkout's R package; they use keras3, which the
CI machine cannot install, so there its `library(keras3)` line is replaced
by the stand-in the vignettes use (inst/keras3-stand-in.R), and nothing
else changes.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "NEWS.md", ROOT / "benchmarks" / "README.md",
         *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")
KERAS3 = "library(keras3)\n"
STAND_IN = ('if (requireNamespace("keras3", quietly = TRUE)) library(keras3) else '
            'source(system.file("keras3-stand-in.R", package = "bnlstm"))\n')


def code_blocks(page, language):
    return [match.group(2) for match in FENCE.finditer(page.read_text())
            if match.group(1) == language]


def pages_with(language):
    return [pytest.param(page, id=str(page.relative_to(ROOT)))
            for page in PAGES if code_blocks(page, language)]


@pytest.fixture
def scratch(tmp_path):
    (tmp_path / "inst").symlink_to(ROOT / "inst")
    return tmp_path


def run(command, cwd, env):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout


def test_the_pages_have_code_to_run():
    assert len(code_blocks(ROOT / "README.md", "python")) >= 1
    assert len(code_blocks(ROOT / "README.md", "r")) >= 1
    assert len(pages_with("python")) >= 6


@pytest.mark.parametrize("page", pages_with("python"))
def test_python_blocks_run(page, scratch):
    code = "\n".join(code_blocks(page, "python"))
    run([sys.executable, "-c", code], scratch, {})


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
@pytest.mark.parametrize("page", pages_with("r"))
def test_r_blocks_run(page, scratch, r_library):
    code = "\n".join(code_blocks(page, "r"))
    run(["Rscript", "-e", code.replace(KERAS3, STAND_IN)], scratch,
        {"R_LIBS": str(r_library), "RETICULATE_PYTHON": sys.executable})


def test_readme_opens_with_install_and_first_models():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300
    headings = [i for i, line in enumerate(lines) if line.startswith("## ")]
    titles = {lines[i]: i for i in headings}
    for title in ("## Install", "## A first model in Python",
                  "## A first model in R"):
        assert titles[title] < 150, title


@pytest.mark.parametrize("page", [pytest.param(page, id=str(page.relative_to(ROOT)))
                                  for page in PAGES])
def test_links_stay_inside_the_repository(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{page.name} links outside: {target}"
        assert path.exists(), f"{page.name} links to a missing file: {target}"
