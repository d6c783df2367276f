"""`python -m mirage` (and `accelerate launch -m mirage ...`) runs the command line."""

from mirage.cli import main

main()
