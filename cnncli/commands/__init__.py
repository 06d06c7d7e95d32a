"""One module per `cnn` subcommand, each a thin Typer function; heavy imports stay inside."""
