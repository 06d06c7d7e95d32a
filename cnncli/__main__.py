"""`python -m cnncli` runs the cnn command line."""

from cnncli.cli import main

main()
