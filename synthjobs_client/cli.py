"""The `synthjobs` command (Typer): drive the API over HTTP; the service's own commands run
`synthjobs.server_cli`.

Exit codes (README, "CLI for automation"): 0 success; 1 the job failed or was cancelled; 2 usage error or
rejected request; 3 the API cannot be reached (also a proxy's 502/503/504); 4 timed out waiting.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from synthjobs_client.client import is_outage
from synthjobs_client.commands import datasets, jobs, models, schedules, server
from synthjobs_client.errors import APIUnreachable, ClientError, WaitTimeout
from synthjobs_client.output import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Options,
    emit,
)

__all__ = [
    "EXIT_JOB_FAILED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "app",
    "emit",
    "main",
]

EPILOG = """Examples:

  synthjobs demo

  synthjobs train --epochs 30 --wait

  synthjobs train --dataset mnist:/data/torchvision --wait

  synthjobs sample digits-cvae:1 --per-class 1000 --wait

  synthjobs sample digits-cvae@champion --total 100000 --distribution 3=0.5,8=0.5

  synthjobs status JOB_ID --json

  synthjobs download JOB_ID ./out

  synthjobs schedules create nightly --cron '0 3 * * *' --model-name digits-cvae

  synthjobs admin create-token --tenant acme

Exit codes: 0 success, 1 job failed or cancelled, 2 usage error or rejected request,
3 API unreachable, 4 timed out. `synthjobs COMMAND --help` shows each command's examples.
"""

app = typer.Typer(
    name="synthjobs",
    help="Train class-conditional VAEs and bulk-generate labelled synthetic data.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    api_url: Annotated[
        str | None, typer.Option("--api-url", help="API base URL (default: $SYNTHJOBS_API_URL).")
    ] = None,
) -> None:
    """Train class-conditional VAEs and bulk-generate labelled synthetic data."""
    ctx.obj = Options(api_url=api_url)


jobs.register(app)
app.add_typer(models.app, name="models")
app.add_typer(datasets.app, name="datasets")
app.add_typer(schedules.app, name="schedules")
server.register(app)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script: run one command and return its exit code.

    Usage errors print the usage line and raise SystemExit(2), as argparse did; every other failure is one
    `error: ...` line on stderr and an exit code from the table in the module docstring.
    """
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = command.main(args=args, prog_name="synthjobs", standalone_mode=False)
    except typer.TyperException as exc:  # a usage error: bad option, missing argument, unknown command
        if hasattr(exc, "show"):
            exc.show()  # the usage line, then `Error: ...`
        else:
            print(f"error: {exc.format_message()}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return EXIT_USAGE
    except APIUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ClientError as exc:
        if is_outage(exc):
            print(
                f"error: the API is not answering (HTTP {exc.status}): {exc.message[:300]}", file=sys.stderr
            )
            return EXIT_UNREACHABLE
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except WaitTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    return result if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
