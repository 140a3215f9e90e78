"""The `bigbird-pegasus` command: `main.py` holds the table of subcommands, one module per subcommand, the
shared argument types in `arguments.py` and how a command reports problems in `running.py`."""
