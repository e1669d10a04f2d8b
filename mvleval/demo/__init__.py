"""`mvleval demo`: the built-in default job (command.py) and the demo model it ships trained (model/)."""
