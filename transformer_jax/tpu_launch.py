"""Train on a Cloud TPU VM or multi-host slice (v4, v5e, v5p, v6e), data and workdir on GCS.

  python -m transformer_jax.tpu_launch --tpu=NAME --zone=ZONE --accelerator=v4-32 \\
      --bucket=BUCKET --run=base [--step=all] [--dry-run] [-- --config.train.steps=1000 ...]

Steps (each a gcloud command run from this checkout; --dry-run prints them instead):
  bucket  a Cloud Storage bucket with hierarchical namespace (atomic folder renames, which
          orbax's checkpoint commits rely on through Cloud Storage FUSE);
  create  the TPU VM or slice (one VM per host);
  copy    this checkout to ~/transformer_jax on every host;
  setup   on every host: Cloud Storage FUSE, the bucket mounted at /gcs, this package with
          its `tpu` extra (jax[tpu]);
  train   on every host at once: `transformer_jax.main train` with jax.distributed
          (config.distributed.enabled; TPU hosts find each other by themselves), workdir
          /gcs/runs/RUN. Each host logs to ~/train_RUN.log; process 0 writes the workdir.
`all` runs copy, setup and train (the bucket and the TPU usually exist already). Arguments after
`--` go to `train` unchanged, e.g. data on the bucket:
  -- --config.data.train_src=/gcs/data/train.en --config.data.train_tgt=/gcs/data/train.de
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
MOUNT = "/gcs"
# The package with its `tpu` extra: jax[tpu] of the version pyproject.toml admits.
PACKAGE = "$HOME/transformer_jax[tpu]"
# TPU software versions for JAX by TPU generation (cloud.google.com/tpu/docs/runtimes).
RUNTIMES = {"v4": "tpu-ubuntu2204-base", "v5litepod": "v2-alpha-tpuv5-lite",
            "v5p": "v2-alpha-tpuv5", "v6e": "v2-alpha-tpuv6e"}
STEPS = ("bucket", "create", "copy", "setup", "train")


def runtime_version(accelerator: str) -> str:
  """The TPU software version for an accelerator type such as 'v5litepod-16'.

  Raises:
    SystemExit: an accelerator type of no known generation (names --accelerator).
  """
  generation = accelerator.rsplit("-", 1)[0]
  if generation not in RUNTIMES:
    raise SystemExit(f"error: --accelerator={accelerator!r}: expected <generation>-<cores or "
                     f"chips> with a generation in {sorted(RUNTIMES)}, or pass --runtime-version")
  return RUNTIMES[generation]


def commands(args: argparse.Namespace, train_args: list[str]) -> dict[str, list[list[str]]]:
  """The gcloud argument lists of each step, in order."""
  zone = f"--zone={args.zone}"
  project = [f"--project={args.project}"] if args.project else []
  region = args.zone.rsplit("-", 1)[0]
  ssh = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.tpu, zone, "--worker=all", *project]
  install_fuse = (
      "curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg"
      " | sudo gpg --dearmor --yes -o /usr/share/keyrings/cloud.google.gpg"
      " && echo \"deb [signed-by=/usr/share/keyrings/cloud.google.gpg]"
      " https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -c -s) main\""
      " | sudo tee /etc/apt/sources.list.d/gcsfuse.list"
      " && sudo apt-get update && sudo apt-get install -y gcsfuse")
  mount = (f"sudo mkdir -p {MOUNT} && sudo chown $(whoami) {MOUNT}"
           f" && (mountpoint -q {MOUNT} || gcsfuse --implicit-dirs {args.bucket} {MOUNT})")
  install = f'python3 -m pip install -e "{PACKAGE}"'
  workdir = f"{MOUNT}/runs/{args.run}"
  train = ["python3", "-m", "transformer_jax.main", "train", f"--config={args.config}",
           f"--workdir={workdir}", "--config.distributed.enabled=True", *train_args]
  log = f"~/train_{args.run}.log"
  return {
      "bucket": [["gcloud", "storage", "buckets", "create", f"gs://{args.bucket}",
                  f"--location={region}", "--uniform-bucket-level-access",
                  "--enable-hierarchical-namespace", *project]],
      "create": [["gcloud", "compute", "tpus", "tpu-vm", "create", args.tpu, zone,
                  f"--accelerator-type={args.accelerator}",
                  f"--version={args.runtime_version or runtime_version(args.accelerator)}",
                  *project]],
      "copy": [["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", str(REPO),
                f"{args.tpu}:~/transformer_jax", zone, "--worker=all", *project]],
      "setup": [[*ssh, f"--command={install_fuse} && {mount} && {install}"]],
      # Detached (nohup, every stream redirected) so that training goes on, and ssh returns,
      # when this session ends. `mount` again in case a host rebooted.
      "train": [[*ssh, f"--command={mount} && cd ~/transformer_jax && (nohup "
                 f"{shlex.join(train)} > {log} 2>&1 < /dev/null &)"]],
  }


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  train_args = []
  if "--" in argv:
    argv, train_args = argv[:argv.index("--")], argv[argv.index("--") + 1:]
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--tpu", required=True, help="TPU VM / slice name")
  p.add_argument("--zone", required=True, help="e.g. us-central2-b (v4), us-west4-a (v5e)")
  p.add_argument("--accelerator", default="v4-8", help="e.g. v4-32, v5litepod-16, v5p-16")
  p.add_argument("--runtime-version", default="", help="default: by --accelerator's generation")
  p.add_argument("--bucket", required=True, help="Cloud Storage bucket name, without gs://")
  p.add_argument("--run", required=True, help="run name: workdir gs://BUCKET/runs/RUN")
  p.add_argument("--config", default="configs/base.py", help="config file, relative to the repo")
  p.add_argument("--project", default="", help="Google Cloud project (default: gcloud's)")
  p.add_argument("--step", default="all", choices=STEPS + ("all",))
  p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
  return p.parse_args(argv), train_args


def main(argv: list[str] | None = None) -> None:
  args, train_args = parse(sys.argv[1:] if argv is None else argv)
  steps = ("copy", "setup", "train") if args.step == "all" else (args.step,)
  plan = commands(args, train_args)
  for step in steps:
    for command in plan[step]:
      print(f"# {step}\n{shlex.join(command)}", flush=True)
      if not args.dry_run:
        subprocess.run(command, check=True)


if __name__ == "__main__":
  main()
