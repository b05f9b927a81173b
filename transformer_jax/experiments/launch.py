"""Launchers: run the runs of a sweep on this machine (a process pool) or as Ray tasks.

Both start each unfinished run as `python -m transformer_jax.main run ...` in its workdir's
sweep, with its spec written to WORKDIR/run.json first and its output appended to
WORKDIR/run.log. What only this project knows decides what happens next:
  - a run with a record (result.json) is finished and never started again;
  - a run with a checkpoint resumes from it (the `run` command does so by itself);
  - exit status 75 (EX_TEMPFAIL) means another process holds the workdir (the workdir lock):
    the run is claimed by another sweep (or `run`) and skipped, not failed;
  - a run killed by a signal, or stopped by SIGTERM (preemption: it checkpointed first), is
    interrupted: Ray retries it (up to `max_retries` times), resuming from its checkpoint;
  - any other non-zero exit (bad config, bad data, divergence) is a failure: reported with its
    log, and the other runs go on.

`local(runs, parallel=N)` is a process pool on this machine (an interrupted run counts as
failed there; starting the sweep again resumes it). With N > 1 each run is pinned to its own
share of the machine's CPUs (`cpu_slots`), so N runs do not fight over the same cores: XLA's CPU
thread pool sizes itself to the CPUs a process may use. On a 2-core VM, base-sized mini
Table 3 runs pinned to one core each, two at a time, trained at 0.81 of the speed of one run
on both cores (1.6x the sweep's throughput), big at 0.58 (1.16x): see
experiments/table3_mini/README.md. `ray_sweep(runs, ...)` sends every run to
a Ray cluster (`address='auto'`) or to a local Ray instance (address None, bound to
127.0.0.1) as a task that declares its resources (default one CPU): one run = one host. Ray
retries a task when its worker or node dies, and when the run's process is killed. Every node
must see the workdirs (NFS, a bucket mounted with gcsfuse) and have this package installed.
If only a worker dies and its run's process outlives it, the retry finds the workdir held and
reports the run as claimed while that process finishes it.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from typing import Callable, Sequence

from transformer_jax import workdir as workdir_lib
from transformer_jax.experiments.spec import SPEC, Run, SpecError

CLAIMED = workdir_lib.EX_TEMPFAIL  # 75: another process holds the workdir (workdir.hold)
_INTERRUPTED = (128 + signal.SIGTERM, 128 + signal.SIGKILL, 128 + signal.SIGINT)
OUTCOMES = ("skipped", "done", "claimed", "failed")  # keys of a launcher's summary


class RunInterrupted(RuntimeError):
  """A run's process was killed or preempted; the task is retried and resumes."""


def write_spec(workdir: pathlib.Path, spec: dict) -> None:
  """Writes a run's spec to WORKDIR/run.json (atomically; two sweeps write the same)."""
  workdir.mkdir(parents=True, exist_ok=True)
  tmp = workdir / f"{SPEC}.{os.getpid()}.tmp"
  tmp.write_text(json.dumps(spec, indent=2) + "\n")
  tmp.replace(workdir / SPEC)


_MAIN = ("-m", "transformer_jax.main")  # what a run's process runs (a test replaces it)


def cpu_slots(cpus: Sequence[int], parallel: int) -> list[tuple[int, ...]] | None:
  """`cpus` split into `parallel` disjoint runs of consecutive entries, one per run slot.

  The first len(cpus) % parallel slots get one CPU more. None (no pinning) when parallel is 1
  or there are fewer CPUs than slots.
  """
  cpus = sorted(cpus)
  if parallel <= 1 or len(cpus) < parallel:
    return None
  size, extra = divmod(len(cpus), parallel)
  slots, at = [], 0
  for i in range(parallel):
    n = size + (i < extra)
    slots.append(tuple(cpus[at:at + n]))
    at += n
  return slots


def _start(argv: Sequence[str], workdir: pathlib.Path, cwd: str | None,
           cpus: Sequence[int] | None = None) -> subprocess.Popen:
  """Starts `transformer_jax.main ARGV` with this interpreter, appending to WORKDIR/run.log;
  on the CPUs `cpus` only, when given.

  The affinity is set on the new process as soon as it exists, while its interpreter starts
  and before it has threads (its later threads inherit it): no preexec_fn, which would fork
  this multithreaded process (JAX's threads) and can deadlock.
  """
  with open(workdir / "run.log", "a", encoding="utf-8") as log:
    # On a line of its own even after a killed process's unfinished progress bar.
    log.write(("\n" if log.tell() else "") + f"== {time.strftime('%Y-%m-%dT%H:%M:%S')} on "
              f"{socket.gethostname()} pid {os.getpid()}: transformer-jax {' '.join(argv)}\n")
    log.flush()
    proc = subprocess.Popen([sys.executable, *_MAIN, *argv], cwd=cwd, stdout=log,
                            stderr=subprocess.STDOUT)
  if cpus:
    try:
      os.sched_setaffinity(proc.pid, cpus)
    except ProcessLookupError:  # it has already exited; its exit status says how
      pass
  return proc


def outcome(returncode: int, run: Run) -> str:
  """'done', 'claimed', 'interrupted' or 'failed' for a run's exit status."""
  if returncode == 0 and run.finished:
    return "done"
  if returncode == CLAIMED:
    return "claimed"
  if returncode < 0 or returncode in _INTERRUPTED:
    return "interrupted"
  return "failed"


def _report(run: Run, result: str, detail: str, log: Callable[[str], None]) -> None:
  if result == "done":
    log(f"done {run.name} {detail}")
  elif result == "claimed":
    log(f"skip {run.name}: claimed by another process (its workdir {run.workdir} is held; "
        f"see {run.workdir / 'run.log'})")
  else:
    log(f"FAILED {run.name} ({detail}); see {run.workdir / 'run.log'}")


def _split_finished(runs: Sequence[Run], log) -> tuple[dict[str, list[Run]], list[Run]]:
  out: dict[str, list[Run]] = {k: [] for k in OUTCOMES}
  todo = []
  for r in runs:
    (out["skipped"] if r.finished else todo).append(r)
  for r in out["skipped"]:
    log(f"skip {r.name}: {r.workdir / 'result.json'} exists")
  return out, todo


def local(runs: Sequence[Run], *, parallel: int = 1, pin_cpus: bool = True,
          log: Callable[[str], None] = print, poll_seconds: float = 0.5) -> dict[str, list[Run]]:
  """Runs the unfinished runs on this machine, `parallel` at a time.

  With `pin_cpus` and parallel > 1 (on Linux, with at least `parallel` CPUs), each run
  slot keeps its own CPUs of this process's affinity (`cpu_slots`) and every run started in it
  is pinned to them; the log says which.

  Returns:
    {'skipped': finished before, 'done': finished now, 'claimed': held by another sweep,
    'failed': any other exit, or no result.json} (OUTCOMES).

  Raises:
    SpecError: parallel < 1.
  """
  if parallel < 1:
    raise SpecError(f"--parallel must be >= 1, got {parallel}")
  out, todo = _split_finished(runs, log)
  slots = (cpu_slots(os.sched_getaffinity(0), parallel)
           if pin_cpus and hasattr(os, "sched_setaffinity") else None)
  free: list[tuple[int, ...] | None] = list(slots) if slots else [None] * parallel
  active: list[tuple[Run, subprocess.Popen, float, tuple[int, ...] | None]] = []
  while todo or active:
    while todo and free:
      r, cpus = todo.pop(0), free.pop(0)
      write_spec(r.workdir, r.spec())
      resuming = (r.workdir / "checkpoints").exists()
      where = f" on CPUs {','.join(map(str, cpus))}" if cpus else ""
      log(f"{'resume' if resuming else 'start'} {r.name}{where}: {r.command()}")
      active.append((r, _start(r.argv, r.workdir, None, cpus), time.perf_counter(), cpus))
    time.sleep(poll_seconds if active else 0)
    for item in list(active):
      r, proc, started, cpus = item
      if proc.poll() is None:
        continue
      active.remove(item)
      free.append(cpus)
      result = outcome(proc.returncode, r)
      result = "failed" if result == "interrupted" else result
      out[result].append(r)
      _report(r, result, f"exit {proc.returncode} after "
              f"{(time.perf_counter() - started) / 60:.1f} min", log)
  return out


def run_task(argv: Sequence[str], workdir: str, spec: dict, cwd: str) -> tuple[int, float]:
  """The body of one Ray task: runs the run's command in its workdir (see ray_sweep).

  Returns:
    (exit status, minutes); status 0 without starting anything if the run is already finished.

  Raises:
    RunInterrupted: the run's process was killed or preempted (Ray then retries the task).
  """
  cwd = cwd if os.path.isdir(cwd) else os.getcwd()  # the sweep's directory, if this node has it
  workdir = pathlib.Path(cwd, workdir)  # relative workdirs are relative to the sweep's directory
  if (workdir / "result.json").exists():  # finished by another sweep, or before a retry
    return 0, 0.0
  write_spec(workdir, spec)
  started = time.perf_counter()
  code = _start(argv, workdir, cwd).wait()
  if code < 0 or code in _INTERRUPTED:
    raise RunInterrupted(f"{spec['name']}: process ended by a signal (exit {code}) on "
                         f"{socket.gethostname()}")
  return code, (time.perf_counter() - started) / 60


def task_options(resources: dict[str, float], max_retries: int) -> dict:
  """Ray task options for `resources` ({'CPU': 1}, {'GPU': 1}, {'TPU': 4}, ...).

  Raises:
    SpecError: a resource amount that is not a number >= 0.
  """
  options = {"num_cpus": 0, "max_retries": max_retries, "retry_exceptions": [RunInterrupted]}
  custom = {}
  for name, amount in resources.items():
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
      raise SpecError(f"--run_resources: {name} must be a number >= 0, got {amount!r}")
    if name in ("CPU", "GPU"):
      options[f"num_{name.lower()}s"] = amount
    elif name == "memory":
      options["memory"] = amount
    else:
      custom[name] = amount
  if custom:
    options["resources"] = custom
  return options


def connect(address: str | None, num_cpus: int) -> None:
  """Connects to the Ray cluster at `address` ('auto' = the one this node belongs to), or
  starts a local Ray instance with `num_cpus` CPUs bound to 127.0.0.1, no dashboard; nothing
  if this process is already connected."""
  if address is None:  # Ray binds to this node's address unless told it is a one-node cluster
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
  import ray  # pylint: disable=import-outside-toplevel
  if ray.is_initialized():
    return
  kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
  if address is None:
    ray.init(num_cpus=num_cpus, **kwargs)
  else:
    ray.init(address=address, **kwargs)


def ray_sweep(runs: Sequence[Run], *, address: str | None = None,
              resources: dict[str, float] | None = None, parallel: int | None = None,
              max_retries: int = 3, log: Callable[[str], None] = print) -> dict[str, list[Run]]:
  """Runs the unfinished runs as Ray tasks, each declaring `resources` (default {'CPU': 1}).

  Args:
    address: a running cluster ('auto', 'HOST:PORT'); None starts a local instance with
      `parallel` x the runs' CPUs (default 1 x).
    parallel: at most this many runs in flight (None: as many as the cluster's resources fit).
    max_retries: retries of a run whose process or worker died.

  Returns:
    As `local`; a run still interrupted after its retries is 'failed'.

  Raises:
    SpecError: parallel < 1 or a bad resource amount.
  """
  resources = {"CPU": 1} if resources is None else resources
  if parallel is not None and parallel < 1:
    raise SpecError(f"--parallel must be >= 1, got {parallel}")
  options = task_options(resources, max_retries)
  out, todo = _split_finished(runs, log)
  if not todo:
    return out
  connect(address, max(1, int((parallel or 1) * max(resources.get("CPU", 1), 1))))
  import ray  # pylint: disable=import-outside-toplevel  # after connect() chose the address
  task = ray.remote(run_task).options(**options)
  cwd = os.getcwd()
  pending: dict = {}
  while todo or pending:
    while todo and (parallel is None or len(pending) < parallel):
      r = todo.pop(0)
      log(f"submit {r.name} ({resources}): {r.command()}")
      pending[task.remote(list(r.argv), str(r.workdir), r.spec(), cwd)] = r
    ready, _ = ray.wait(list(pending), num_returns=1)
    r = pending.pop(ready[0])
    try:
      code, minutes = ray.get(ready[0])
      result, detail = outcome(code, r), f"exit {code} after {minutes:.1f} min"
    except ray.exceptions.RayError as e:  # retries used up, or the task could not run
      result, detail = "failed", f"{type(e).__name__}: {str(e).strip().splitlines()[-1]}"
    result = "failed" if result == "interrupted" else result
    out[result].append(r)
    _report(r, result, detail, log)
  return out
