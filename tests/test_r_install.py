"""R users install bnlstm as R packages install: `R CMD build`, then
`R CMD INSTALL` of the tarball (what `remotes::install_github()` does), and
the layer works with a Python that has Keras and TensorFlow but not
pybnlstm: no pip step, no PYTHONPATH."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import venv
from pathlib import Path

import keras
import pytest

import pybnlstm

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow" or shutil.which("R") is None,
    reason="needs R, and the TensorFlow backend the R side uses")


def test_python_and_r_packages_carry_one_version():
    description = (ROOT / "DESCRIPTION").read_text()
    version = re.search(r"^Version: (\S+)$", description, re.M).group(1)
    assert pybnlstm.__version__ == version


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A Python with this environment's packages except pybnlstm: a virtual
    environment that reads the test environment's site-packages through a
    `.pth` line. Python runs the `.pth` files of its own site-packages
    only, so the editable install of pybnlstm stays out."""
    home = tmp_path_factory.mktemp("bare-python")
    venv.create(home, with_pip=False)
    python = home / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
         "['purelib'])"], capture_output=True, text=True, check=True,
    ).stdout.strip()
    Path(site, "test-environment.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util, keras, pandas, "
         "tensorflow; print(importlib.util.find_spec('pybnlstm'))"],
        capture_output=True, text=True, cwd=home,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip() == "None"
    return python


@pytest.fixture(scope="module")
def installed_from_tarball(tmp_path_factory):
    """The R package built into a tarball and installed from it into a
    fresh library."""
    build = tmp_path_factory.mktemp("r-build")
    subprocess.run(["R", "CMD", "build", "--no-build-vignettes", str(ROOT)],
                   cwd=build, check=True, capture_output=True)
    tarball = next(build.glob("bnlstm_*.tar.gz"))
    library = tmp_path_factory.mktemp("r-library")
    result = subprocess.run(
        ["R", "CMD", "INSTALL", "--no-test-load", "-l", str(library),
         str(tarball)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return library


def rscript(code, library, python, cwd):
    env = dict(os.environ, R_LIBS=str(library), RETICULATE_PYTHON=str(python),
               TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)
    result = subprocess.run(["Rscript", "-e", textwrap.dedent(code)],
                            env=env, capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    return result.stdout


TRAIN = """
library(bnlstm)
keras <- reticulate::import("keras")
set.seed(1)
x <- array(runif(40 * 6 * 2), c(40, 6, 2))
y <- matrix(x[, 6, 1] - x[, 1, 2], 40, 1)
model <- keras$Sequential() |>
  layer_bn_lstm(units = 4, input_shape = c(6, 2), return_sequences = TRUE) |>
  layer_bn_lstm(units = 3)
model$add(keras$layers$Dense(1L))
model$compile(optimizer = "adam", loss = "mse")
model$fit(x, y, epochs = 2L, batch_size = 8L, verbose = 0L)
prediction <- model$predict(x, verbose = 0L)
model$save("model.keras")
saveRDS(list(x = x, prediction = prediction), "expected.rds")
cat("module:", bnlstm:::bnlstm_python()$`__file__`, "\\n")
"""

RELOAD = """
library(bnlstm)
invisible(bnlstm:::bnlstm_python())
model <- reticulate::import("keras")$saving$load_model("model.keras")
expected <- readRDS("expected.rds")
gap <- max(abs(model$predict(expected$x, verbose = 0L) - expected$prediction))
cat("gap:", gap, "\\n")
stopifnot(gap == 0)
"""


def test_tarball_install_fits_predicts_saves_and_reloads(
        installed_from_tarball, bare_python, tmp_path):
    out = rscript(TRAIN, installed_from_tarball, bare_python, tmp_path)
    module = re.search(r"module: (\S+)", out).group(1)
    # The copy the R package carries, installed with it.
    assert Path(module) == (installed_from_tarball / "bnlstm" / "python" /
                            "pybnlstm" / "__init__.py").resolve()
    out = rscript(RELOAD, installed_from_tarball, bare_python, tmp_path)
    assert "gap: 0" in out


def test_carried_module_matches_the_repository(installed_from_tarball):
    carried = installed_from_tarball / "bnlstm" / "python"
    for source in (ROOT / "pybnlstm").glob("*.py"):
        assert (carried / "pybnlstm" / source.name).read_bytes() == \
            source.read_bytes()
    # install_bnlstm() pip-installs this folder: its pyproject.toml is the
    # repository's, less the README it does not carry.
    project = (carried / "pyproject.toml").read_text()
    assert 'name = "pybnlstm"' in project and "readme" not in project


def test_r_requirements_derive_from_pyproject(installed_from_tarball):
    """pyproject.toml is the one list of Python requirements: the R
    package's (what py_require() and install_bnlstm() get) is its
    dependencies and its tensorflow and forecast extras, and DESCRIPTION's
    prose names each."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    expected = project["dependencies"] + extras["tensorflow"] + extras["forecast"]
    carried = installed_from_tarball / "bnlstm" / "python" / "requirements.txt"
    assert carried.read_text().split() == expected
    description = (ROOT / "DESCRIPTION").read_text()
    for requirement in expected:
        assert f"'{re.split('[<>=!~]', requirement)[0]}'" in description


def test_a_pybnlstm_imported_first_is_named_in_a_warning(
        installed_from_tarball, tmp_path):
    code = """
    reticulate::import("pybnlstm")
    library(bnlstm)
    invisible(bnlstm:::bnlstm_python())
    """
    env = dict(os.environ, R_LIBS=str(installed_from_tarball),
               RETICULATE_PYTHON=sys.executable, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(["Rscript", "-e", textwrap.dedent(code)],
                            env=env, capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "A pybnlstm is already imported in this Python session from " \
        f"{ROOT / 'pybnlstm'}; bnlstm uses it, not its own copy" in \
        result.stderr.replace("\n", " ")
