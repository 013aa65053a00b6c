"""The interactive prompt of ``tsconnector query``: history, multi-line statements, tables.

Enter runs the statement when its quotes and parentheses are closed and it does not
end with a backslash; otherwise it starts a new line (Escape then Enter always runs it).
``\\q`` or Ctrl-D leaves, ``\\format table|json|csv`` changes the output, ``\\?`` helps.
Needs prompt_toolkit (``pip install 'tsconnector[cli]'``), imported only here.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..client import TsClient
from ..exceptions import QueryError, TsConnectorError
from .connect import Target
from .errors import CliError, describe
from .query import answer_text
from .render import FORMATS

__all__ = ["load_prompt_toolkit", "run_shell", "statement_complete"]

HISTORY_ENV = "TSCONNECTOR_HISTORY"
HELP = """\
Type a statement and press Enter (for example: show version, list series,
select * from "cpu" after now - 1h). Unclosed quotes or parentheses, or a
trailing backslash, continue on the next line.
  \\format table|json|csv   how answers are printed (now: {fmt})
  \\?                       this help
  \\q or Ctrl-D             quit
"""


def load_prompt_toolkit() -> Any:
    """Import prompt_toolkit, or fail with the extra to install."""
    try:
        import prompt_toolkit
    except ImportError:
        raise CliError(
            "the interactive prompt needs prompt_toolkit: pip install 'tsconnector[cli]' "
            "(or give the statement on the command line)"
        ) from None
    return prompt_toolkit


def statement_complete(text: str) -> bool:
    """True when Enter should run ``text``: quotes and parentheses closed, no trailing ``\\``."""
    stripped = text.strip()
    if not stripped or stripped.startswith("\\"):
        return True
    if stripped.endswith("\\"):
        return False
    quote: str | None = None
    depth = 0
    for ch in stripped:
        if quote is not None:
            if ch == quote:
                quote = None  # a doubled quote closes and reopens: still balanced
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
    return quote is None and depth <= 0


def _clean(text: str) -> str:
    """The statement to send: continuation backslashes and a final ``;`` removed."""
    lines = [line[:-1] if line.rstrip().endswith("\\") else line for line in text.splitlines()]
    statement = " ".join(part.strip() for part in lines if part.strip())
    return statement[:-1].rstrip() if statement.endswith(";") else statement


def _history_path(args: argparse.Namespace) -> Path:
    if args.history:
        return Path(args.history).expanduser()
    return Path(os.environ.get(HISTORY_ENV) or "~/.tsconnector_history").expanduser()


async def run_shell(client: TsClient, target: Target, args: argparse.Namespace) -> int:
    """Read statements until ``\\q`` or Ctrl-D; print each answer. Returns exit status 0."""
    load_prompt_toolkit()
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

    bindings = KeyBindings()

    @bindings.add("enter")
    def _enter(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if statement_complete(buffer.text):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(_history_path(args))),
        multiline=True,
        key_bindings=bindings,
        prompt_continuation=lambda width, line, wrap: "." * (width - 1) + " ",
    )
    fmt = args.format or "table"
    from ..protocol import PRECISION_NAMES

    precision = None if args.precision is None else PRECISION_NAMES.index(args.precision)
    print(f"Connected to {target.dbname} on {target.where}. \\? for help, \\q or Ctrl-D to quit.")
    while True:
        try:
            text = await session.prompt_async(f"{target.dbname}> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            return 0
        statement = _clean(text)
        if not statement:
            continue
        if statement.startswith("\\"):
            command, _, rest = statement.partition(" ")
            if command in ("\\q", "\\quit"):
                return 0
            if command == "\\format" and rest.strip() in FORMATS:
                fmt = rest.strip()
                print(f"answers are printed as {fmt}")
            elif command in ("\\?", "\\h", "\\help"):
                print(HELP.format(fmt=fmt), end="")
            else:
                print(f"unknown command {statement!r} (\\? for help)")
            continue
        try:
            print(await answer_text(client, statement, fmt, precision, args.timeout), end="")
        except QueryError as exc:
            print(f"error: {' '.join(exc.message.split())}")
        except (TsConnectorError, ValueError, TypeError) as exc:
            print(f"error: {describe(exc)}")
