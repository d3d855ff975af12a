"""The one object that writes to the terminal.

Every command builds one `Output` from its flags and passes it to everything that has
something to say; nothing else prints. The modes keep stdout machine-readable:

* `text` (default): progress lines and the result on stdout; on a terminal one line is
  rewritten in place for long waits, the image build (step n of m) and the push (a byte
  progress bar).
* `json`: progress lines on stderr, and stdout holds exactly one JSON document, the
  command's result (written once, at the end).
* `quiet`: errors only, plus the one line a script wants (provision's URL).

`--verbose` adds detail lines (the Docker engine's raw build and push stream). Errors
always go to stderr. Threads (the steps running at once) write through the same lock,
so lines never interleave; each thread has its own part of the live line.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TextIO

from deployer.errors import DeployerError

Mode = Literal["text", "json", "quiet"]
MODES: tuple[Mode, ...] = ("text", "json", "quiet")
BAR_WIDTH = 24


class Output:
    """Where progress, results, warnings and errors go, by mode."""

    def __init__(
        self,
        mode: Mode = "text",
        *,
        verbose: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        stdin: TextIO | None = None,
    ) -> None:
        self.mode: Mode = mode
        self.verbose = verbose
        self._stdout = stdout or sys.stdout
        self._stderr = stderr or sys.stderr
        self._stdin = stdin or sys.stdin
        self._lock = threading.RLock()
        self._live_shown = False
        self._live_parts: dict[int, str] = {}  # each thread's part of the live line
        self._progress = {"text": self._stdout, "json": self._stderr, "quiet": None}[mode]
        self.terminal = self._progress is not None and _isatty(self._progress)

    def line(self, text: str) -> None:
        """A progress line (not in quiet mode)."""
        self._write(self._progress, text)

    def detail(self, text: str) -> None:
        """A line only `--verbose` shows, such as the engine's raw build output."""
        if self.verbose:
            self.line(text)

    def warn(self, text: str) -> None:
        """Something the user should know that does not stop the command (not in quiet mode)."""
        if self.mode != "quiet":
            self._write(self._stderr, f"warning: {text}")

    def error(self, text: str) -> None:
        self._write(self._stderr, f"error: {text}")

    def live(self, text: str) -> None:
        """On a terminal, set this thread's part of the live line to `text` ("" removes it); elsewhere nothing.

        Steps run at once (deployer/parallel.py): the runner shows what runs, a step its wait, the image its
        push; the line shows every thread's part, joined, cut to the terminal's width so it never wraps (a
        wrapped line could not be rewritten in place)."""
        if not self.terminal or self._progress is None:
            return
        with self._lock:
            key = threading.get_ident()
            if text:
                self._live_parts[key] = text
            else:
                self._live_parts.pop(key, None)
            self._show_live()

    def _show_live(self) -> None:
        assert self._progress is not None
        width = shutil.get_terminal_size().columns - 1
        shown = " | ".join(self._live_parts.values())[:width]
        self._progress.write("\r\033[K" + shown)
        self._progress.flush()
        self._live_shown = bool(shown)

    def bar(self, label: str, done: int, total: int) -> None:
        """A live byte progress bar, e.g. for an image push."""
        if total <= 0:
            self.live(f"{label}: {done / 1e6:.1f} MB")
            return
        filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
        self.live(f"{label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done / 1e6:.1f}/{total / 1e6:.1f} MB")

    def result(
        self, document: Mapping[str, Any] | list[Any], text: Sequence[str] = (), quiet: str | None = None
    ) -> None:
        """The command's result: the JSON document, the text lines, or the quiet line."""
        if self.mode == "json":
            self._write(self._stdout, json.dumps(document, indent=2, default=str))
        elif self.mode == "text":
            for line in text:
                self._write(self._stdout, line)
        elif quiet is not None:
            self._write(self._stdout, quiet)

    def confirm(self, question: str, *, where: str) -> bool:
        """Ask on the terminal; without one, refuse rather than guess."""
        if not _isatty(self._stdin):
            raise DeployerError(
                "Refusing to go on without confirmation: there is no terminal to ask on",
                where=where,
                todo="Run it in a terminal, or pass --yes to confirm in advance",
            )
        with self._lock:
            self._clear_live()
            self._stderr.write(f"{question} Type 'yes' to confirm: ")
            self._stderr.flush()
            answer = self._stdin.readline()
        return answer.strip().lower() == "yes"

    def _write(self, stream: TextIO | None, text: str) -> None:
        if stream is None:
            return
        with self._lock:
            self._clear_live()
            stream.write(text + "\n")
            stream.flush()
            if self._live_parts and self.terminal:  # the other threads' parts stay shown under the new line
                self._show_live()

    def _clear_live(self) -> None:
        if self._live_shown and self._progress is not None:
            self._progress.write("\r\033[K")
            self._live_shown = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
