"""pyproject.toml's dependency ranges, constraints.txt, and which libraries the core imports.

The ranges must admit what is installed here, the exact pins of constraints.txt (what CI
installs), and the accelerator image this project runs on (jax/jaxlib 0.11.2 with its CUDA 13
plugin, sentencepiece 0.2.2, numpy 2.5.2; PyPI here serves jax only up to 0.10.2, so these are
checked as version numbers against the ranges and against the installed flax/optax/orbax's
own requirements).
"""

from __future__ import annotations

import importlib.metadata as metadata
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")
from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402
from packaging.version import Version  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# The H200 image's versions (the device tool's notes and the issue that asked for this).
ACCELERATOR_IMAGE = {"jax": "0.11.2", "jaxlib": "0.11.2", "jax-cuda13-plugin": "0.11.2",
                     "sentencepiece": "0.2.2", "numpy": "2.5.2"}


def _requirements(group: list[str]) -> dict[str, Requirement]:
  reqs = [Requirement(r) for r in group]
  return {canonicalize_name(r.name): r for r in reqs if canonicalize_name(r.name) !=
          "transformer-jax"}


CORE = _requirements(PROJECT["dependencies"])
EXTRAS = {name: _requirements(reqs) for name, reqs in PROJECT["optional-dependencies"].items()}


def test_every_requirement_is_a_bounded_range():
  for name, req in [*CORE.items(), *EXTRAS["test"].items(), *EXTRAS["tfds"].items(),
                    *EXTRAS["report"].items()]:
    ops = {s.operator for s in req.specifier}
    assert ">=" in ops and "<" in ops or "==" in ops or name == "packaging", (name, str(req))


def test_ranges_admit_the_accelerator_images_jax_and_versions():
  assert CORE["jax"].specifier.contains("0.11.2") and CORE["jax"].specifier.contains("0.10.2")
  assert not CORE["jax"].specifier.contains("0.12.0")  # not tried: excluded
  for extra, plugin in (("cuda", "cuda13"), ("tpu", "tpu")):
    (req,) = EXTRAS[extra].values()
    assert req.name == "jax" and req.extras == {plugin}, str(req)
    assert req.specifier.contains("0.11.2") and req.specifier.contains("0.10.2")
  for name, version in ACCELERATOR_IMAGE.items():
    if name in CORE:
      assert CORE[name].specifier.contains(version), (name, version, str(CORE[name]))


@pytest.mark.parametrize("package", ["flax", "optax", "orbax-checkpoint"])
def test_installed_jax_libraries_accept_jax_0_11(package):
  """The installed flax/optax/orbax (the newest PyPI serves here) declare jax and jaxlib
  ranges that hold 0.11.2, so the image's jax does not force other versions of them."""
  reqs = [Requirement(r) for r in metadata.requires(package) or []]
  on_jax = [r for r in reqs if r.name in ("jax", "jaxlib") and not r.marker]
  assert on_jax, f"{package} declares no jax requirement"
  for r in on_jax:
    assert r.specifier.contains("0.11.2"), (package, str(r))


def test_installed_versions_are_admitted():
  wanted = {**CORE, **EXTRAS["test"], **EXTRAS["tfds"], **EXTRAS["report"]}
  for name, req in wanted.items():
    version = metadata.version(name)
    assert req.specifier.contains(version, prereleases=True), (name, version, str(req))


def test_constraints_pin_every_requirement_inside_its_range():
  pins = {}
  for line in (ROOT / "constraints.txt").read_text().splitlines():
    if line.strip() and not line.startswith("#"):
      name, version = line.split("==")
      pins[canonicalize_name(name)] = Version(version)
  assert len(pins) > 20
  for name, req in {**CORE, **EXTRAS["test"], **EXTRAS["tfds"], **EXTRAS["report"]}.items():
    assert name in pins, f"constraints.txt has no pin for {name}"
    assert req.specifier.contains(pins[name]), (name, str(pins[name]), str(req))
  ci = (ROOT / ".ci" / "run").read_text()
  assert 'PIP_CONSTRAINT="$PWD/constraints.txt"' in ci
  assert ci.index("PIP_CONSTRAINT") < ci.index('eval "$test_cmd"')


def test_training_and_translating_import_no_optional_library():
  """TFDS, array_record, sacremoses and matplotlib load only where they are used."""
  code = ("import sys, transformer_jax.main, transformer_jax.train, transformer_jax.evaluate, "
          "transformer_jax.decode, transformer_jax.data, transformer_jax.experiments.compare; "
          "print(sorted(m for m in ('tensorflow_datasets', 'array_record', 'sacremoses', "
          "'matplotlib', 'scipy', 'tensorflow') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=ROOT)
  assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_missing_tfds_matplotlib_or_scipy_is_one_clear_error(monkeypatch, tmp_path):
  from transformer_jax import tfds_data
  from transformer_jax.experiments import compare, compare_plots
  from transformer_jax.config import ConfigError, default_config
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import now raises
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  monkeypatch.setitem(sys.modules, "scipy", None)
  config = default_config()
  config.data.source = "tfds"
  with pytest.raises(ConfigError, match=r"config.data.source='tfds' needs.*\.\[tfds\]"):
    tfds_data.open_split(config, "train")
  with pytest.raises(compare_plots.PlotsUnavailable, match=r"matplotlib.*\.\[report\]"):
    compare_plots.curves(None, [], tmp_path / "x.png")
  with pytest.raises(compare.ReportError, match=r"scipy.*\.\[report\]"):
    compare.welch([1.0, 2.0], [3.0, 4.0])
