"""Synthetic instructions: speakers over path summaries, and LangNav-style imagined trajectories.

The flow (``vlnav instruct`` or :func:`vlnav.instruct.pipeline.run_instruct`)::

    episode + SceneSpec ──> PathSummary (rooms, doorways, turns, landmarks)
        ──> prompt (assets/prompts) ──> Speaker (template | openai:<model> | hf:<id or path>)
        ──> validation (length, landmarks, hallucinations, duplicates; regenerate on reject)
        ──> R2R-CE .json.gz with new instructions + text trajectories (JSONL)

Importing this package imports nothing heavy: torch and transformers are loaded only when an
``hf`` speaker is constructed.
"""
