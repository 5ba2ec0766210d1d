"""Prefect orchestration of the DVC pipeline: ``python -m pipelines <flow> --help``.

Flows (``pipelines.flows``):

* ``train_pipeline`` - one Prefect task per DVC stage (``dvc repro -s <stage>``, so dvc.lock stays
  the record and unchanged stages are skipped), retries on transient failures, metrics returned
  and published as a markdown artifact;
* ``sweep`` - a seed x lambda grid as DVC experiments (``dvc exp run --temp``), one at a time,
  with a comparison table;
* ``promote`` - move ``models/promoted.json`` (the service's model pointer) to the newly
  packaged generator only when it beats the promoted one on the selection metric;
* ``retrain_and_promote`` - the two above in one run; what ``python -m pipelines serve`` schedules;
* ``train_stage`` - one stage where the flow runs: the entry point of the work-pool deployment
  (``pipelines.workpool``, ``python -m pipelines deploy-train``) that ``train_pipeline`` sends
  ``train@<e>`` stages to when given ``train_deployment`` (a GPU worker).

``pipelines.results`` reads what the stages left (metrics, grids, DVC experiments' records) for
the flows' artifacts and the sweep's comparison table.

Layering: this package imports ``infogan``; ``infogan`` never imports it. Prefect itself is
imported only by ``pipelines.flows``/``pipelines.deploy``/``pipelines.workpool`` so the CLI can set the tool
environment (PREFECT_HOME, PREFECT_API_URL) before Prefect reads its settings.
"""
