"""Placeholder: the core subcommands are registered here (being written)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the core subcommands (convert, validate, demo)."""
