"""The command line: each subcommand parses its flags, calls the Python API and prints."""
