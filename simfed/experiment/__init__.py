"""What a user touches: scenario files, running them, sweeps and the CLI.

``scenario`` reads and validates TOML scenario files into
:class:`simfed.config.Scenario`; ``cli_scenario`` adds the ``simfed validate``
and ``simfed schema`` commands. This layer sits on top of ``sim/`` and
``protocol/`` and is the only one that uses pydantic.
"""
