"""Sweeps as data: the points of a sweep, declared next to `get_config` in the config file.

A config file that can be swept defines, beside `get_config(arg)`, a function
`get_sweep(arg)` that returns a list of points built with the combinators below (the shape of
big_vision's and flax's sweeps):

  from transformer_jax.experiments.spec import product, sweep

  def get_sweep(arg):
    return product(sweep("model.h", [2, 4]), sweep("model.p_drop", [0.1, 0.3]))

A point is a set of config overrides ('section.key' -> value) with a name; a run is a point
with a seed. Names are derived from the overrides ('h=4,p_drop=0.3'; 'base' for none), so the
same sweep always gives the same names and a rerun finds its own workdirs
(ROOT/NAME/seedK). `point(...)` declares a named point with metadata (Table 3's rows carry the
paper's numbers) and, where the config file must apply the overrides itself (Table 3 shrinks
each row after overriding it), the config argument that selects it.

`plan(...)` loads a config file's sweep, checks it (every override key exists, every value is
one the key accepts, no two runs share a name) and expands it into `Run`s with their commands.
Mistakes raise `SpecError` naming the file and line, the key or the flag.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import fnmatch
import itertools
import json
import pathlib
import re
import shlex
from typing import Any, Sequence

import ml_collections

from transformer_jax import config as config_lib
from transformer_jax import config_file

SEED_KEYS = ("train.seed", "data.seed")  # what a run's seed sets (parameters, dropout, batches)
RESULT = "result.json"  # a run's record, written last (record.py): its presence = finished
SPEC = "run.json"  # the run's spec, written into its workdir before it starts (launch.py)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.=,+-]+$")  # a name is one directory name


class SpecError(ValueError):
  """A sweep declaration or a sweep flag is invalid; the message names the file, key or flag."""


@dataclasses.dataclass(frozen=True)
class Point:
  """One point of a sweep: config overrides, and optionally an explicit name, config argument
  and metadata (copied into the run's record)."""
  overrides: tuple[tuple[str, Any], ...]
  name: str | None = None
  arg: str | None = None
  metadata: tuple[tuple[str, Any], ...] = ()

  @property
  def label(self) -> str:
    """The point's name: explicit, or derived from its overrides."""
    return self.name if self.name is not None else name_of(dict(self.overrides))


def _format(value: Any) -> str:
  if isinstance(value, (list, tuple)):
    return "-".join(map(_format, value))
  return str(value)


def name_of(overrides: dict[str, Any]) -> str:
  """A readable, stable name of a set of overrides, in their declared order:
  {'model.h': 4, 'model.p_drop': 0.3} -> 'h=4,p_drop=0.3'; {} -> 'base'. A key is shortened to
  its last part unless two keys share that part ('model.max_len=64,data.max_len=32')."""
  if not overrides:
    return "base"
  short = [k.split(".")[-1] for k in overrides]
  return ",".join(f"{s if short.count(s) == 1 else k}={_format(v)}"
                  for s, (k, v) in builtins.zip(short, overrides.items()))


def _check_key(key: Any) -> str:
  if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_]\w*\.[A-Za-z_]\w*", key):
    raise SpecError(f"sweep key {key!r} must be 'section.key', e.g. 'model.h'")
  return key


def sweep(key: str, values: Sequence[Any]) -> list[Point]:
  """One point per value of `key` ('section.key'), in the given order.

  Raises:
    SpecError: a malformed key, or an empty or non-list value list.
  """
  _check_key(key)
  if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
    raise SpecError(f"sweep({key!r}, ...): values must be a list, got {values!r}")
  values = list(values)
  if not values:
    raise SpecError(f"sweep({key!r}, []): empty value list; give at least one value")
  return [Point(((key, v),)) for v in values]


def point(name: str | None = None, overrides: dict[str, Any] | None = None, *,
          arg: str | None = None, metadata: dict[str, Any] | None = None) -> list[Point]:
  """A single point, e.g. a named row of a table: `point('A-h16', {'model.h': 16, ...},
  metadata={'paper_bleu_dev': 25.8})`.

  Args:
    name: the point's name (default: derived from `overrides`).
    overrides: 'section.key' -> value.
    arg: the config argument that selects this point (get_config(arg)); then the config file
      applies `overrides` itself (they are recorded, not passed again as flags).
    metadata: JSON-serialisable values copied into the run's record.
  """
  overrides = dict(overrides or {})
  for key in overrides:
    _check_key(key)
  return [Point(tuple(overrides.items()), name, arg, tuple((metadata or {}).items()))]


def _merge(points: Sequence[Point], how: str) -> Point:
  keys: dict[str, Any] = {}
  for p in points:
    for key, value in p.overrides:
      if key in keys:
        raise SpecError(f"{how}: key {key!r} appears in two of its sweeps")
      keys[key] = value
  names = [p.name for p in points if p.name is not None]
  args = {p.arg for p in points if p.arg is not None}
  if len(args) > 1:
    raise SpecError(f"{how}: points with different config arguments {sorted(args)} combined")
  return Point(tuple(keys.items()), ",".join(names) if len(names) == len(points) else None,
               args.pop() if args else None, tuple(itertools.chain(*(p.metadata for p in points))))


def _check_sweeps(sweeps: Sequence[Any], how: str) -> None:
  if not sweeps:
    raise SpecError(f"{how}() of no sweeps")
  for s in sweeps:
    if not isinstance(s, list) or not all(isinstance(p, Point) for p in s):
      raise SpecError(f"{how}: expected sweeps (lists from sweep/point/product/zip/chain), got "
                      f"{s!r}")


def product(*sweeps: list[Point]) -> list[Point]:
  """Every combination, the last sweep varying fastest (itertools.product's order).

  Raises:
    SpecError: the same key in two sweeps.
  """
  _check_sweeps(sweeps, "product")
  return [_merge(combo, "product") for combo in itertools.product(*sweeps)]


def zip(*sweeps: list[Point]) -> list[Point]:  # pylint: disable=redefined-builtin
  """The i-th points of each sweep together (sweeps of equal length).

  Raises:
    SpecError: sweeps of different lengths, or the same key in two sweeps.
  """
  _check_sweeps(sweeps, "zip")
  lengths = [len(s) for s in sweeps]
  if len(set(lengths)) > 1:
    raise SpecError(f"zip: sweeps of different lengths {lengths}")
  return [_merge(combo, "zip") for combo in builtins.zip(*sweeps)]


def chain(*sweeps: list[Point]) -> list[Point]:
  """The points of each sweep, one sweep after another."""
  _check_sweeps(sweeps, "chain")
  return list(itertools.chain(*sweeps))


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
  """One run of a sweep: a point with a seed, its workdir and its command.

  `argv` is the command's arguments after `python -m transformer_jax.main` (the same as after
  `transformer-jax`), e.g. ('run', '--config=FILE:ARG', '--workdir=ROOT/NAME/seed0', ...).
  """
  group: str
  overrides: dict[str, Any]
  seed: int
  metadata: dict[str, Any]
  sweep: str
  workdir: pathlib.Path
  argv: tuple[str, ...]

  @property
  def name(self) -> str:
    return f"{self.group}/seed{self.seed}"

  @property
  def finished(self) -> bool:
    return (self.workdir / RESULT).exists()

  def spec(self) -> dict[str, Any]:
    """The run's entry of its record (result.json 'run'), also written to WORKDIR/run.json."""
    return {"name": self.name, "group": self.group, "overrides": self.overrides,
            "seed": self.seed, "sweep": self.sweep, "metadata": self.metadata}

  def command(self) -> str:
    """The run's shell command, with the `transformer-jax` entry point."""
    return " ".join(["transformer-jax", *map(shlex.quote, self.argv)])


def _where(path: pathlib.Path, error: BaseException) -> str:
  """'FILE:LINE' of the innermost frame of `error` in the config file, else 'FILE'."""
  lines = config_file.lines_in(error, str(path))
  return f"{path}:{lines[-1]}" if lines else str(path)


def load_sweep(config: str) -> tuple[pathlib.Path, str | None, list[Point], Any]:
  """(file, arg, points, module) of a 'FILE[:ARG]' whose file defines get_sweep(arg).

  Raises:
    SpecError: no such file, no get_sweep, an error inside it (with its line), a result that is
      not a non-empty list of points, or two points with one name.
  """
  file, _, arg = config.partition(":")
  path = pathlib.Path(file)
  if not path.is_file():  # missing, or a directory: said as for any --config
    raise SpecError(config_file.problem(None, config) or f"--config={config}: no file {path}")
  try:
    module = config_lib.load_module(path)
  except Exception as e:  # the user's file: say where it broke, as for any --config
    raise SpecError(config_file.problem(e, config)
                    or f"{_where(path, e)}: {type(e).__name__}: {e}") from None
  if not callable(getattr(module, "get_sweep", None)):
    raise SpecError(f"{path} defines no get_sweep(arg); a sweepable config file defines one "
                    "next to get_config (see experiments/example_sweep.py)")
  try:
    points = module.get_sweep(arg) if arg else module.get_sweep()
  except SpecError as e:
    raise SpecError(f"{_where(path, e)}: {e}") from None
  except Exception as e:  # the user's code: say where it broke, in one line
    raise SpecError(f"{_where(path, e)}: get_sweep({arg!r}): {type(e).__name__}: {e}") from None
  if not isinstance(points, list) or not points or not all(isinstance(p, Point) for p in points):
    raise SpecError(f"{path}: get_sweep({arg!r}) must return a non-empty list of points "
                    f"(spec.sweep/point/product/zip/chain), got {points!r:.200}")
  seen: dict[str, Point] = {}
  for p in points:
    if not _SAFE_NAME.match(p.label):
      raise SpecError(f"{path}: point name {p.label!r} is not one directory name (letters, "
                      "digits and _.=,+- only); give the point a name with spec.point(name, ...)")
    if p.label in seen:
      raise SpecError(f"{path}: two runs named {p.label!r}: {dict(seen[p.label].overrides)} and "
                      f"{dict(p.overrides)}; names must be unique")
    seen[p.label] = p
  return path, arg or None, points, module


def parse_override(raw: str) -> tuple[str, str]:
  """('section.key', 'VALUE') of a '--config.section.key=VALUE' flag."""
  key, _, value = raw[len("--config."):].partition("=")
  return key, value


def _value(text: str, default: Any) -> Any:
  """A flag's text as the type of the field it overrides (like ml_collections' flags)."""
  if isinstance(default, str):
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  return float(value) if isinstance(default, float) and isinstance(value, int) else value


def _check_config(base: ml_collections.ConfigDict, overrides: dict[str, Any],
                  flags: dict[str, str], where: str) -> None:
  """Applies `overrides` (values) and `flags` ('--config.*' texts) to a copy of `base` and
  validates it.

  Raises:
    SpecError: an unknown key (with the keys its section has) or a value config.validate refuses.
  """
  c = ml_collections.ConfigDict(base.to_dict())
  for key, value in [*overrides.items(), *flags.items()]:
    section, _, name = key.partition(".")
    if section not in c or name not in c[section]:
      known = sorted(c[section]) if section in c else sorted(c)
      raise SpecError(f"{where}: unknown config key '{key}'; "
                      f"{'config.' + section + ' has' if section in c else 'sections:'} {known}")
    c[section][name] = _value(value, c[section][name]) if key in flags else value
  try:
    config_lib.validate(c)
  except config_lib.ConfigError as e:
    raise SpecError(f"{where}: {e}") from None


def _flag(key: str, value: Any) -> str:
  """'--config.KEY=VALUE' as ml_collections parses it (a tuple as '(1,2,)')."""
  if isinstance(value, (list, tuple)):
    value = "(" + "".join(f"{v}," for v in value) + ")"
  return f"--config.{key}={value}"


def _matches(name: str, entry: str) -> bool:
  return fnmatch.fnmatchcase(name, entry) or fnmatch.fnmatchcase(name, entry + "-*")


def select(points: list[Point], only: str) -> list[Point]:
  """The points that `only` names, in declaration order, plus the reference point (no
  overrides) if the sweep has one; all points if `only` is empty.

  `only` is a comma-separated list of entries, each a name, a shell glob such as 'A-*', or
  the part of a name before a '-' ('A' for 'A-h1', 'A-h4', ...). Names hold commas
  themselves ('h=4,p_drop=0.3'): each entry is the longest run of comma-separated pieces that
  matches a point.

  Raises:
    SpecError: a piece that matches no point (the message lists the names).
  """
  pieces = [p.strip() for p in only.split(",") if p.strip()]
  names = [p.label for p in points]
  entries, i = [], 0
  while i < len(pieces):
    for j in range(len(pieces), i, -1):
      entry = ",".join(pieces[i:j])
      if any(_matches(n, entry) for n in names):
        entries.append(entry)
        i = j
        break
    else:
      raise SpecError(f"--only: {pieces[i]!r} matches no run of this sweep; names: "
                      f"{'; '.join(names)}")
  if not entries:
    return points
  return [p for p in points if not p.overrides or any(_matches(p.label, e) for e in entries)]


def plan(config: str, *, root: str | pathlib.Path, seeds: int = 1, only: str = "",
         extra_args: Sequence[str] = ()) -> list[Run]:
  """The runs of the sweep in 'FILE[:ARG]', point-major (all seeds of a point together).

  Run (point, seed K) lives in ROOT/NAME/seedK and runs
    transformer-jax run --config=FILE:ARG --workdir=ROOT/NAME/seedK --config.KEY=VALUE...
      --config.train.seed=K --config.data.seed=K [extra_args]
  where ARG is the point's own config argument if it has one (its overrides are then applied
  by the config file), else the sweep's.

  Args:
    config: the config file, with the argument given to get_sweep and get_config.
    root: directory holding one workdir per run.
    seeds: seeds per point, 0..seeds-1.
    only: names or globs of the points to run, comma-separated (see `select`).
    extra_args: '--config.KEY=VALUE' flags passed to every run.

  Raises:
    SpecError: see load_sweep and select; seeds < 1; an unknown key or a bad value in a point
      or in extra_args (named with the run).
  """
  if seeds < 1:
    raise SpecError(f"--seeds must be >= 1, got {seeds}")
  path, arg, points, module = load_sweep(config)
  points = select(points, only)
  extra = dict(parse_override(a) for a in extra_args)
  bases: dict[str | None, ml_collections.ConfigDict] = {}
  runs = []
  for p in points:
    point_arg = p.arg if p.arg is not None else arg
    if point_arg not in bases:
      try:
        bases[point_arg] = module.get_config(point_arg) if point_arg else module.get_config()
      except Exception as e:  # the user's code, as in load_sweep
        raise SpecError(f"{_where(path, e)}: get_config({point_arg!r}): {type(e).__name__}: "
                        f"{e}") from None
    base = bases[point_arg]
    overrides = dict(p.overrides)
    flags = [] if p.arg is not None else [_flag(k, v) for k, v in overrides.items()]
    checked = {} if p.arg is not None else dict(overrides)
    checked.update({k: 0 for k in SEED_KEYS})
    _check_config(base, checked, extra, f"{path} run {p.label!r}")
    config_flag = f"--config={path}" + (f":{point_arg}" if point_arg else "")
    for seed in range(seeds):
      workdir = pathlib.Path(root) / p.label / f"seed{seed}"
      argv = ("run", config_flag, f"--workdir={workdir}", *flags,
              *(_flag(k, seed) for k in SEED_KEYS), *extra_args)
      metadata = json.loads(json.dumps(dict(p.metadata)))  # JSON-clean copy
      runs.append(Run(p.label, overrides, seed, metadata, config, workdir, argv))
  return runs
