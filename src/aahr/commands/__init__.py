"""One module per `aahr` subcommand (see aahr.cli)."""
