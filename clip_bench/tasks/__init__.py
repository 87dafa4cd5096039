"""What a task is, and where each part of it lives.

- :mod:`~clip_bench.tasks.schema`: the task-file schema (``TASK_KEYS``, ``SOURCE_KEYS``, ``TASK_KINDS``,
  ``METRICS``) and the checks of a task file's and a collections file's mapping.
- :mod:`~clip_bench.tasks.spec`: the ``TaskSpec`` and ``SourceSpec`` dataclasses, and ``task_kind``.
- :mod:`~clip_bench.tasks.loader`: reading one task file (strict YAML, ``include:``, label-map checks) into a spec.
- :mod:`~clip_bench.tasks.catalog`: the catalogue (``get_task``, ``list_tasks``, ``expand_tasks``) and the
  collections (``list_collections``, ``headline_collections``).
- :mod:`~clip_bench.tasks.prompts`, :mod:`~clip_bench.tasks.class_groups`, :mod:`~clip_bench.tasks.probe_plan`,
  :mod:`~clip_bench.tasks.status`: class names and templates, class groups, linear-probe plans, data presence.
"""
