"""`python -m mvleval` (also what torchrun launches) runs the CLI."""

from mvleval.cli import main

main()
