"""Subcommands of the ``simfed`` CLI, one module each (see simfed.cli)."""
