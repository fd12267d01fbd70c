"""Stage C: turn dirty traces into training data.

One module per step, each a builtin step function ``run(ctx) -> dict``:

``extract_journal``  the thrash/deadlock/recovery journal and candidate examples from the traces
``guard_dataset``    row schema, dedup, secret/PII scrub, token-length limits; rejects kept with reasons
``guard_split``      train/valid/test split by episode or task, deterministic for a seed
``dataset_stats``    Golden / Failure-recovery / Reject counts and the failure-recovery dominance gate
``sft_dpo_recipe``   SFT rows and DPO pairs from recovered steps, with the recipe manifest
``prepare_mlx``      the files ``mlx_lm.lora`` (chat format) and DPO trainers read

Every row of every dataset carries its provenance: source trace file, its sha256, episode and tick range.
"""
