"""Whole measured training and inference steps of transformers on NVIDIA GPUs, predicted with the
GPU presets (``pytest-dojo validate steps``).

* :mod:`~dojo_validation.steps.labels`: the measured steps (``dojo_validation/data/gpu_steps``),
  the preset and plan each ran on, NeuSight's published figures;
* :mod:`~dojo_validation.steps.build`: each model built and captured as it was measured
  (Hugging Face ``transformers``, the ``[validation]`` extra);
* :mod:`~dojo_validation.steps.layers`: the per-layer labels, and the op class each error comes from;
* :mod:`~dojo_validation.steps.predict`: one label's prediction, its roofline and its op classes;
* :mod:`~dojo_validation.steps.table`: the table, the summaries and the targets;
* :mod:`~dojo_validation.steps.memory_fit`: which attempted steps fitted each GPU's memory;
* :mod:`~dojo_validation.steps.validate`: the command.
"""
