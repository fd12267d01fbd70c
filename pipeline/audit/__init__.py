"""The recursive dual-LLM audit: the release gate the plan keeps between evidence and a GO.

An audit step bundles the evidence (report, death traces, recovery chains, context profile, comparison, the
architect's notes) into a hashed packet, refuses to ask anyone when the deep-water evidence is missing
(green-only), asks a primary auditor for a verdict, asks a recursive auditor to judge that verdict against the
same packet, and writes ``verdict.json`` for the operator's gate. Every path that is not two agreeing, well-formed
GO verdicts ends in NO-GO, INVALID or BLOCKED with its reason.
"""
