"""Dataset presets: knowledge of one kind of data, plugged into the general core.

A preset registers objective terms (``infogan.objective.register``) and attribute sets
(``infogan.attributes.register_attribute_set``) when loaded, and is listed in pyproject.toml's
``infogan.presets`` entry-point group so the core finds it without naming it. An experiment
in params.yaml switches a preset's terms on by name under ``train.objective``.

- ``digits``: handwritten-digit geometry (slant, width) for MNIST-like data.
"""
