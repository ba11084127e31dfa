"""How every command line of the package ends: a one-line ``error: ...`` for a user's
mistake, a traceback only for a bug, and no TensorFlow start-up noise.

Every ``main(argv=None)`` of the package (``feseq_tf.*``, ``pipelines.*``, ``export.*``,
``benchmarks.*``) is decorated with :func:`command`:

* bad arguments, files or data (``ValueError``, ``OSError``, ``argparse`` errors, a
  ``SystemExit`` with a message, a missing or corrupt TensorFlow file) end the command
  with one line ``error: <what is wrong>`` on standard error and a non-zero exit status;
* any other exception is a bug and keeps its traceback; ``--debug`` (anywhere on the
  command line, or ``FESEQ_TF_DEBUG=1``) keeps the traceback of every error;
* run as a program, TensorFlow's C++ logs are set to warnings and errors
  (``TF_CPP_MIN_LOG_LEVEL=2`` unless set) and its known harmless lines are dropped from
  standard error for the whole run (:class:`feseq_tf.tf_logging.StderrFilter`). With
  ``python -m <module of the project>`` the filter starts when the project's first
  package is imported, before any module imports TensorFlow (:func:`quiet_command_line`,
  called by ``feseq_tf/__init__.py``); an entry point called with no ``argv`` (a console
  script) starts it in ``main``. A test that calls ``main([...])`` gets the same errors
  without the filter.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from feseq_tf import tf_logging

__all__ = ["DEBUG_FLAG", "PACKAGES", "command", "error_line", "is_user_error",
           "quiet_command_line"]

#: The project's top-level packages: ``python -m`` of a module in them is a command line.
PACKAGES = ("feseq_tf", "pipelines", "export", "benchmarks")

#: The flag (and ``FESEQ_TF_DEBUG=1``) that keeps the traceback of every error.
DEBUG_FLAG = "--debug"

_Main = TypeVar("_Main", bound=Callable[..., Any])

# TensorFlow's errors that mean a file is missing or corrupt, by class name (checked
# only when TensorFlow is imported).
_TF_USER_ERRORS = ("NotFoundError", "DataLossError", "PermissionDeniedError")


class _ArgumentError(Exception):
    """An argparse error, raised instead of argparse's usage text and exit."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{message} (see {_program(prog)} --help)")


def _program(prog: str) -> str:
    """How the user ran the command: ``python -m <module>`` rather than argparse's
    default ``<file>.py``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None or prog != os.path.basename(sys.argv[0]):
        return prog
    return "python -m " + spec.name.removesuffix(".__main__")


def is_user_error(err: BaseException) -> bool:
    """Whether an exception is a user's mistake (bad arguments, files or data), not a bug.

    Args:
        err: BaseException. The exception a command ended with.

    Returns:
        True for ``ValueError`` (the package's validation error, ``UsageError`` included),
        ``OSError`` (missing, unreadable or existing files, a refused connection), YAML
        syntax errors and TensorFlow's not-found / data-loss / permission errors.
    """
    if isinstance(err, (ValueError, OSError, _ArgumentError)):
        return True
    for cls in type(err).__mro__:
        module = cls.__module__ or ""
        if module.startswith("yaml") and cls.__name__ == "YAMLError":
            return True
        if module.startswith("tensorflow") and cls.__name__ in _TF_USER_ERRORS:
            return True
    return False


def error_line(err: BaseException | str) -> str:
    """The one line ``error: ...`` a command prints for a user's mistake.

    Args:
        err: BaseException or str. The error, or its message.

    Returns:
        ``"error: " + message``, the message's lines joined into one (a ``FileNotFoundError``
        from Python names its file), without a second ``error:`` prefix.
    """
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        message = f"{err.strerror}: {err.filename}"
    elif isinstance(err, BaseException):
        message = str(err) or type(err).__name__
        if type(err).__module__.startswith("tensorflow"):
            message = message.strip().splitlines()[0] if message.strip() else message
    else:
        message = err
    message = re.sub(r"\s*\n\s*", " ", message.strip())
    message = re.sub(r"^error:\s*", "", message)
    return f"error: {message}"


_filter: tf_logging.StderrFilter | None = None


def _start_filter() -> None:
    """Start the process's standard-error filter (once), unless ``TF_CPP_MIN_LOG_LEVEL=0``."""
    global _filter
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _filter is not None or os.environ["TF_CPP_MIN_LOG_LEVEL"].strip() in ("", "0"):
        return
    _filter = tf_logging.StderrFilter()
    _filter.start()
    atexit.register(_stop_filter)


def _stop_filter() -> None:
    global _filter
    if _filter is not None:
        _filter.stop()
        _filter = None


def quiet_command_line() -> None:
    """Start the standard-error filter now if the process is ``python -m`` of a module of
    the project (see the module docstring); otherwise do nothing.

    While ``python -m`` locates its module, ``sys.argv[0]`` is ``"-m"`` and
    ``sys.orig_argv`` names the module.
    """
    if sys.argv[:1] != ["-m"]:
        return
    argv = list(getattr(sys, "orig_argv", ()))
    if "-m" not in argv[:-1]:
        return
    module = argv[argv.index("-m") + 1]
    if module.partition(".")[0] in PACKAGES:
        _start_filter()


@contextlib.contextmanager
def _argparse_raises() -> Iterator[None]:
    """argparse errors raise :class:`_ArgumentError` instead of printing usage and exiting."""
    original = argparse.ArgumentParser.error

    def error(self: argparse.ArgumentParser, message: str) -> None:
        raise _ArgumentError(self.prog, message)

    argparse.ArgumentParser.error = error  # type: ignore[method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original  # type: ignore[method-assign]


def command(main: _Main) -> _Main:
    """Decorate a command line's ``main(argv=None)``; see the module docstring.

    Args:
        main: the command's entry point, taking ``argv`` (None: ``sys.argv[1:]``).

    Returns:
        The entry point with the package's error handling: it returns what ``main``
        returns, or raises ``SystemExit`` (``"error: ..."``, status 1; status 2 for bad
        arguments, as argparse does).
    """

    @functools.wraps(main)
    def entry(argv: Sequence[str] | None = None, *args: Any, **kwargs: Any) -> Any:
        arguments = list(sys.argv[1:] if argv is None else argv)
        debug = DEBUG_FLAG in arguments or os.environ.get("FESEQ_TF_DEBUG", "") not in ("", "0")
        arguments = [a for a in arguments if a != DEBUG_FLAG]
        if argv is None:  # a command line
            _start_filter()
        try:
            with _argparse_raises():
                return main(arguments, *args, **kwargs)
        except _ArgumentError as err:
            _stop_filter()
            print(error_line(err), file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        except SystemExit as err:
            _stop_filter()
            if isinstance(err.code, str):  # a message: make it the one error line
                raise SystemExit(error_line(err.code)) from None
            raise
        except KeyboardInterrupt:
            _stop_filter()
            if debug:
                raise
            raise SystemExit("error: interrupted") from None
        except Exception as err:
            _stop_filter()  # the traceback or the error line is not filtered
            if debug or not is_user_error(err):
                raise
            raise SystemExit(error_line(err)) from None

    return entry  # type: ignore[return-value]
