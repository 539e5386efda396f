"""The subcommands, each with its own parser: the build's flags (``build``, which doctor shares),
``smoke``, the local container (``local``: run, logs, shell), ``clean``, ``doctor`` and
``completion``. ``cli`` dispatches to them and maps their errors to exit codes."""
