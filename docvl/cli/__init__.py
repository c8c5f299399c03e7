"""The `docvl` command: one Typer app, its commands in this package (serve: the processes; jobs: the
client's commands; platform: up, api, keys; eval), errors through docvl.cli.errors."""

from __future__ import annotations


def main() -> None:
    from docvl.cli import eval as eval_commands
    from docvl.cli import jobs, platform
    from docvl.cli.serve import app

    platform.register(app)
    jobs.register(app)
    eval_commands.register(app)
    app()
