"""The experiment layer: how a sweep is declared, launched, recorded and compared.

  declare   spec.py     A config file defines get_sweep(arg) next to get_config(arg): points
                        built with sweep / product / zip / chain / point. A run is a point (a
                        name and its config overrides, plus metadata) with a seed; its name,
                        'h=4,p_drop=0.3/seed1', is derived from the overrides and names its
                        workdir ROOT/h=4,p_drop=0.3/seed1. spec.plan() checks the sweep and
                        gives each run its `transformer-jax run ...` command.
            table3.py   Table 3 of the paper as one such sweep: a chain of named rows with the
                        paper's numbers as metadata, and the mini (CPU) scale.
  launch    launch.py   local(): a process pool on this machine. ray_sweep(): each run a Ray
                        task with declared resources, retried when its worker, node or process
                        dies; it resumes from its checkpoint. Both skip finished runs, skip runs
                        another sweep holds (exit 75), and report failures with their logs.
  record    record.py   `transformer-jax run`: train, score the dev set, write result.json with
                        the run's spec under 'run' (from WORKDIR/run.json).
  compare   compare.py  `transformer-jax compare`: reads the records under roots, groups runs
                        by their overrides (seeds pooled), and sets each group against the
                        reference with Welch intervals over seeds, a paired bootstrap over dev
                        sentences (bootstrap.py) and a verdict; compare_report.py writes the
                        Markdown/HTML, compare_plots.py the plots.
            hparams.py  each run's overrides, seed and final dev metrics as TensorBoard HParams.

The command line is `transformer-jax sweep` / `run` / `rows` / `compare` (main.py).
"""
