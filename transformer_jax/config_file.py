"""Why a `--config=FILE[:ARG]` file gave no config, said in one line for the CLI.

ml-collections' config flag (`config_flags.DEFINE_config_file`) imports FILE while the flags are
parsed and calls its `get_config(ARG)` (`get_config()` without ':ARG'). What goes wrong there
surfaces three ways: as the exception itself (a SyntaxError, whatever FILE raises on import);
as a TypeError or ValueError that ml-collections re-raises and absl recasts as
IllegalFlagValueError, the original staying in the exceptions' `__context__` chain; or, for a
missing file, not at all until the config is first used. `problem` reads that chain, the
exceptions' types and attributes and their tracebacks (never their text) and names the file,
the line and what is wrong.
"""

from __future__ import annotations

import os
import types
from typing import Any, Sequence

import ml_collections
from ml_collections.config_flags import config_flags

from transformer_jax.config import ConfigError


def spec_from_argv(argv: Sequence[str]) -> str | None:
  """The value of the last `--config=VALUE` (or `--config VALUE`) in argv; None if absent."""
  spec = None
  for i, arg in enumerate(argv):
    if arg.startswith(("--config=", "-config=")):
      spec = arg.split("=", 1)[1]
    elif arg in ("--config", "-config") and i + 1 < len(argv):
      spec = argv[i + 1]
  return spec


def _chain(error: BaseException) -> list[BaseException]:
  """`error` and the exceptions it was raised from or during, outermost first."""
  chain: list[BaseException] = []
  while error is not None and all(error is not e for e in chain):
    chain.append(error)
    error = error.__cause__ or error.__context__
  return chain


def lines_in(error: BaseException, path: str) -> list[int]:
  """Line numbers of the frames of `error`'s traceback that ran in the file `path`."""
  target, lines = os.path.realpath(path), []
  tb = error.__traceback__
  while tb is not None:
    if os.path.realpath(tb.tb_frame.f_code.co_filename) == target:
      lines.append(tb.tb_lineno)
    tb = tb.tb_next
  return lines


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def problem(error: BaseException | None, spec: str, value: Any = None) -> str | None:
  """What is wrong with the config file of `--config=spec`, in one line, or None.

  Args:
    error: the exception that parsing the flags raised, or None when they parsed (then the
      file's existence and `value` are checked).
    spec: the flag's value, FILE or FILE:ARG.
    value: the parsed config (only used when `error` is None).

  Returns:
    A message naming the flag and the file (and the line, where one is to blame), or None if
    nothing is wrong with the file, or `error` did not come from loading it (an unknown
    --config.KEY override, another flag's value): the caller reports those.
  """
  path, _, arg = spec.partition(":")
  flag = f"--config={spec}"
  if not os.path.exists(path):
    return f"{flag}: config file {path} does not exist"
  if os.path.isdir(path):
    return f"{flag}: {path} is a directory; expected a Python file defining get_config()"
  if error is None:
    if value is None:
      return f"{flag}: get_config() of {path} returned None (a missing return?)"
    if not isinstance(value, ml_collections.ConfigDict):
      try:
        getattr(value, "lock", None)
      except OSError:  # ml-collections hides a FileNotFoundError raised while importing FILE
        return (f"{flag}: importing {path} raised FileNotFoundError: a file it (or a module it "
                "imports) opens does not exist")
      return (f"{flag}: get_config() of {path} returned an object of type "
              f"{type(value).__name__}; expected an ml_collections.ConfigDict")
    return None
  chain = _chain(error)
  for e in chain:
    if isinstance(e, SyntaxError):  # also IndentationError, TabError
      return f"{flag}: syntax error in {e.filename}, line {e.lineno}: {e.msg}"
  for e in reversed(chain):  # the original, not ml-collections' copy of the same type
    if isinstance(e, ConfigError):  # raised by get_config itself (e.g. an unknown Table 3 row)
      return f"{flag}: {e}"
  for e in chain:
    if (isinstance(e, AttributeError) and e.name == "get_config"
        and isinstance(e.obj, types.ModuleType)):
      return (f"{flag}: {path} defines no get_config(); a config file's get_config() returns "
              "its ml_collections.ConfigDict")
  for e in chain:
    if lines := lines_in(e, path):  # raised while FILE ran: on import or in get_config
      return f"{flag}: {path}, line {lines[-1]}: {_first_line(e)}"
  if isinstance(chain[-1], TypeError) and _raised_by_the_call(chain[-1]):
    called = f"get_config({arg!r})" if arg else "get_config()"
    return f"{flag}: {path} cannot be called as {called}: {_first_line(chain[-1])}"
  return None


def _raised_by_the_call(error: BaseException) -> bool:
  """Whether `error` was raised in the frame of ml-collections' file loader itself, i.e. by
  its call `get_config(...)` (arguments that do not fit), not inside get_config."""
  parse = getattr(getattr(config_flags, "ConfigFileFlagParser", None), "parse", None)
  tb = error.__traceback__
  while tb is not None and tb.tb_next is not None:
    tb = tb.tb_next
  return tb is not None and parse is not None and tb.tb_frame.f_code is parse.__code__
