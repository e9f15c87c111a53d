"""CLI subcommands. Every module here exposes ``register(subparsers)``; ``bms.cli``
discovers them, so adding a command never edits a shared file."""
