"""Parallelism: ``sharding`` (meshes, logical axis rules), ``distributed`` (multi-host
start-up), and what a compiled step costs before a run: ``compile_report``,
``sharding_report``, ``aot`` (``mmjax compile`` for TPU slices), ``tpu_topology``,
``hlo_collectives``."""
