"""The run directory: checks that it is usable and that a resumed run matches what it holds.

A workdir holds config.json (the config of the run that last wrote it), the vocabulary and
checkpoints/. Resuming with a different model or different data would restore parameters into
the wrong shapes or continue from a data position that means something else, so `check_config`
refuses such a change unless asked (`--allow_config_change`), and even then refuses any change
of parameter shapes.

One workdir has one writer: `hold(workdir)` is the lock a training process keeps for its whole
life (train.train and experiments.record.run take it), so a second `train` on the same workdir stops at
once with WorkdirBusy instead of writing checkpoints and metrics beside the first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import json
import os
import pathlib
import socket
import tempfile
import threading
import time
from typing import Callable, Iterator

try:
  import fcntl
except ImportError:  # not POSIX: only the holder record is checked
  fcntl = None

import ml_collections

from transformer_jax import config as config_lib

# Sections whose keys may differ on resume without --allow_config_change: they change neither
# the parameters nor the batch stream the checkpoint's data position refers to.
FREE_SECTIONS = ("train", "decode")


class WorkdirError(RuntimeError):
  """The workdir cannot be used; the message names the path and what was expected."""


EX_TEMPFAIL = 75  # sysexits.h: the CLI's exit status for WorkdirBusy (claimed, try later)
LOCK_FILE = ".lock"
HEARTBEAT_SECONDS = 30.0  # how often a holder touches its lock file
STALE_AFTER_SECONDS = 120.0  # a holder on another host silent this long is taken as dead


@dataclasses.dataclass(frozen=True)
class Holder:
  """Who holds a workdir: host name, pid, start (ISO 8601, UTC) and, where /proc exists, the
  process's start time in clock ticks since boot (tells a live pid from a reused one)."""
  host: str
  pid: int
  since: str
  proc_start: int | None = None


class WorkdirBusy(WorkdirError):
  """Another live process holds the workdir (`hold`); `holder` says which, if it could be read.

  The CLI reports it as one `error:` line and exit status 75 (EX_TEMPFAIL): the workdir is
  claimed, not broken, and a sweep skips such a run.
  """

  def __init__(self, workdir: pathlib.Path, holder: Holder | None, detail: str = ""):
    self.workdir, self.holder = workdir, holder
    who = (f"pid {holder.pid} on host {holder.host} (since {holder.since})" if holder else
           f"another process (its record in {workdir / LOCK_FILE} could not be read)")
    super().__init__(f"workdir {workdir} is in use by {who}{detail}; one workdir takes one "
                     "training process at a time: wait for it to finish, stop it, or use "
                     "another --workdir")


def _proc_start(pid: int) -> int | None:
  """Start time of process `pid` in clock ticks since boot (Linux /proc), None if unknown."""
  try:
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
  except OSError:
    return None
  return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name may hold spaces


def _pid_alive(holder: Holder) -> bool:
  try:
    os.kill(holder.pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  start = _proc_start(holder.pid)
  return holder.proc_start is None or start is None or start == holder.proc_start


def _read_holder(fd: int) -> Holder | None:
  try:
    data = json.loads(os.pread(fd, 4096, 0) or b"null")
    return Holder(**data) if isinstance(data, dict) else None
  except (OSError, ValueError, TypeError):
    return None


def read_holder(workdir: str | pathlib.Path) -> Holder | None:
  """The holder recorded in WORKDIR/.lock (None if nobody is recorded). The record outlives a
  process that died; `hold` tells a stale one from a live one."""
  try:
    fd = os.open(pathlib.Path(workdir) / LOCK_FILE, os.O_RDONLY)
  except OSError:
    return None
  try:
    return _read_holder(fd)
  finally:
    os.close(fd)


def _fuse(path: pathlib.Path) -> bool:
  """Whether `path` is on a FUSE file system (gcsfuse, s3fs, ...), whose flock the kernel keeps
  on this host only (Linux /proc/self/mounts; False where that cannot be read)."""
  try:
    with open("/proc/self/mounts", encoding="utf-8") as f:
      mounts = [line.split()[1:3] for line in f]
  except OSError:
    return False
  path = str(path.resolve())
  best, fstype = "", ""
  for point, kind in mounts:
    point = point.replace("\\040", " ")
    if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
      best, fstype = point, kind
  return fstype.startswith("fuse")


def _still_held(holder: Holder | None, fd: int, os_lock: str) -> str | None:
  """Why the record `holder` in the lock file `fd` still counts (a detail for the message), or
  None if it is stale. `os_lock` is 'all' (we hold a flock every host sees), 'host' (a flock
  only this host sees) or '' (no flock). A flock decides where it reaches; without one a holder
  on this host counts while its pid lives, one on another host while it touched the file in
  the last STALE_AFTER_SECONDS."""
  if holder is None or os_lock == "all":
    return None
  if holder.host == socket.gethostname():
    return None if os_lock or not _pid_alive(holder) else ""
  age = time.time() - os.fstat(fd).st_mtime
  if age >= STALE_AFTER_SECONDS:
    return None
  return (f", last seen {age:.0f} s ago (taken as dead after {STALE_AFTER_SECONDS:.0f} s "
          "without a heartbeat)")


@dataclasses.dataclass
class _Held:
  fd: int
  stop: threading.Event
  count: int = 1


_held: dict[pathlib.Path, _Held] = {}
_held_lock = threading.Lock()


def _acquire(workdir: pathlib.Path) -> _Held:
  path = workdir / LOCK_FILE
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise WorkdirError(f"cannot create the lock file {path} ({e.strerror})") from None
  try:
    os_lock = "" if fcntl is None else "host" if _fuse(workdir) else "all"
    if os_lock:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = None
        for _ in range(20):  # the holder writes its record right after locking
          if (holder := _read_holder(fd)) is not None:
            break
          time.sleep(0.05)
        raise WorkdirBusy(workdir, holder) from None
      except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
          raise
        os_lock = ""  # a file system without flock: the record alone decides
    holder = _read_holder(fd)
    detail = _still_held(holder, fd, os_lock)
    if detail is not None:
      raise WorkdirBusy(workdir, holder, detail)
    pid = os.getpid()
    me = Holder(socket.gethostname(), pid,
                datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                _proc_start(pid))
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(dataclasses.asdict(me)).encode(), 0)
    os.fsync(fd)  # gcsfuse uploads a file's content only on fsync or close
  except BaseException:
    os.close(fd)
    raise
  stop = threading.Event()

  def heartbeat():
    while not stop.wait(HEARTBEAT_SECONDS):
      try:
        os.utime(fd)
      except (OSError, NotImplementedError):  # no futimes here: other hosts see it as stale
        pass

  threading.Thread(target=heartbeat, name=f"lock {workdir}", daemon=True).start()
  return _Held(fd, stop)


@contextlib.contextmanager
def hold(workdir: str | pathlib.Path) -> Iterator[pathlib.Path]:
  """Holds `workdir` (an existing directory) for the block: no other process can hold it then.

  The lock is flock(2) on WORKDIR/.lock, which the kernel drops when the holder dies (SIGKILL,
  OOM kill), so a dead run never blocks the next start. The file also records the holder
  (host, pid, start time) for the message of WorkdirBusy, is touched every HEARTBEAT_SECONDS,
  and is emptied on release (never deleted: a deleted lock file lets two processes lock two
  different files). Holding is reentrant within a process (experiments.record.run holds the workdir
  around train.train, which holds it too).

  File systems: on local disks flock excludes every other process, and the record is only
  read for the message. On NFS, Linux turns flock into an NFS lock that holds across hosts (the
  server frees it when a lost client's lease runs out). On FUSE file systems (gcsfuse) the
  kernel's flock holds on one host only, and some file systems refuse flock (ENOLCK,
  EOPNOTSUPP); there the record also decides, best effort and not atomically: a record from
  another host counts while it was touched in the last STALE_AFTER_SECONDS (so a run on a lost
  VM blocks a start elsewhere for at most that long), and without flock a record from this
  host counts while its pid lives.

  Yields:
    The workdir as a Path.

  Raises:
    WorkdirBusy: another live process holds it (the message names the workdir and holder).
    WorkdirError: the lock file cannot be created.
  """
  workdir = pathlib.Path(workdir)
  key = workdir.resolve()
  with _held_lock:
    held = _held.get(key)
    if held is not None:
      held.count += 1
    else:
      held = _held[key] = _acquire(workdir)
  try:
    yield workdir
  finally:
    with _held_lock:
      held.count -= 1
      if not held.count:
        del _held[key]
        held.stop.set()
        try:
          os.ftruncate(held.fd, 0)
        except OSError:
          pass
        os.close(held.fd)  # releases the flock


def prepare(workdir: str | pathlib.Path) -> pathlib.Path:
  """Creates `workdir` if needed and checks that files can be written in it.

  Returns:
    The workdir as a Path.

  Raises:
    WorkdirError: the path is an existing non-directory, or cannot be created or written
      (permissions, read-only file system, a parent that is a file).
  """
  workdir = pathlib.Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise WorkdirError(f"workdir {workdir} is an existing file, not a directory (expected a "
                       "directory for checkpoints and logs, or a path to create one at)")
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):
      pass
  except OSError as e:
    raise WorkdirError(f"workdir {workdir} is not writable ({e.strerror}: {e.filename}); "
                       "expected a directory this user can create files in") from None
  return workdir


def has_checkpoints(workdir: pathlib.Path) -> bool:
  """Whether WORKDIR/checkpoints holds at least one step directory."""
  directory = workdir / "checkpoints"
  return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def _param_shapes(config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """{parameter path: shape} of the model `config` describes, without allocating it."""
  import jax
  from transformer_jax.model import param_shapes
  flat = jax.tree_util.tree_flatten_with_path(param_shapes(config_lib.model_config(config)))[0]
  return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in flat}


def _with(config: ml_collections.ConfigDict, key: str, value) -> ml_collections.ConfigDict:
  copy = ml_collections.ConfigDict(config.to_dict())
  section, name = key.split(".")
  copy[section][name] = value
  return copy


def check_config(workdir: pathlib.Path, config: ml_collections.ConfigDict, *,
                 allow_change: bool = False, log: Callable[[str], None] = print) -> None:
  """Compares `config` with WORKDIR/config.json before a run resumes from its checkpoints.

  Differences in train.* and decode.* are logged and allowed. Differences in model.* or data.*
  are refused unless `allow_change`; with it they are logged and allowed as long as every
  parameter keeps its shape. Nothing is checked when the workdir has no checkpoint yet.

  Raises:
    ConfigError: model.*/data.* keys differ without `allow_change` (each named with its saved
      and requested value), or with it, keys that change parameter shapes (named).
  """
  path = workdir / "config.json"
  if not path.exists() or not has_checkpoints(workdir):
    return
  saved = ml_collections.ConfigDict(json.loads(path.read_text()))
  free, guarded = [], {}
  for section, values in config.items():
    for name, value in values.items():
      if name not in saved.get(section, {}):
        continue
      old = saved[section][name]
      if (list(old) if isinstance(old, (list, tuple)) else old) != (
          list(value) if isinstance(value, (list, tuple)) else value):
        text = f"{section}.{name}: saved {old!r}, requested {value!r}"
        if section in FREE_SECTIONS:
          free.append(text)
        else:
          guarded[f"{section}.{name}"] = (text, value)
  if free:
    log(f"config differs from {path} in " + "; ".join(free))
  if not guarded:
    return
  if not allow_change:
    raise config_lib.ConfigError(
        f"{path} was written for a different model or data; use a new --workdir, the same "
        "config, or --allow_config_change to resume with changes that keep the parameter "
        "shapes. Differing keys: " + "; ".join(text for text, _ in guarded.values()))
  before = _param_shapes(saved)
  if _param_shapes(config) != before:
    reshaping = []
    for key, (text, value) in guarded.items():
      try:
        changed = _param_shapes(_with(saved, key, value))
      except config_lib.ConfigError:
        changed = None
      if changed != before:
        reshaping.append(text)
    raise config_lib.ConfigError(
        f"--allow_config_change cannot resume {workdir} with a model of other parameter "
        "shapes: the checkpoints cannot be restored into it; use a new --workdir. Keys that "
        "change shapes: " + "; ".join(reshaping or [text for text, _ in guarded.values()]))
  log("warning: resuming with config changes (--allow_config_change): "
      + "; ".join(text for text, _ in guarded.values())
      + ". Changed data.* keys change the batches from here on.")
