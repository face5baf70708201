"""CLI verbs: thin argument parsing over the library. See mplug/cli.py."""
