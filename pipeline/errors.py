"""Errors shared by the engine and its clients (so a control client need not import the engine)."""

from __future__ import annotations


class ControlError(Exception):
    """A client request the engine refuses; the message is shown to the operator as is."""
