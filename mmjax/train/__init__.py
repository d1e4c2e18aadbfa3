"""Training: the loop and what it keeps.

``loop`` (init, jitted step, eval, checkpoints, resume), ``accumulate`` (micro-batches,
GradCache), ``checkpoint`` (orbax), ``init_from`` (start from a run or Hugging Face),
``temperature`` (the logit-scale cap), ``faults`` / ``preemption`` (bad steps, bad
records, SIGTERM), ``resume_check`` / ``run_checks`` / ``workdir_lock`` (what is checked
before a run starts) and the metric writers (``metric_writer``, ``wandb_writer``).
"""
