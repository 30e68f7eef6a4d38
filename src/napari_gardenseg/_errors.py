"""Which errors a user can act on and which are bugs to report: one rule for the widgets and the
command line (no Qt, no torch here)."""

from __future__ import annotations

import os

__all__ = ["is_user_error", "in_package"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def in_package(filename) -> bool:
    """Whether ``filename`` (a code object's, a warning's) is one of this package's modules."""
    return os.path.abspath(str(filename)).startswith(_PACKAGE_DIR + os.sep)


def _user_error_types() -> tuple[type, ...]:
    from ._files import OutputExistsError
    from ._image_arrays import ImageError

    types: list[type] = [OutputExistsError, ImageError]
    try:  # _models imports torch: the widgets have it already
        from ._models import ModelError

        types.append(ModelError)
    except ImportError:
        pass
    return tuple(types)


def _raised_here(exc: BaseException) -> bool:
    """True if the innermost frame of ``exc``'s traceback is this package's code (a validation)."""
    tb = exc.__traceback__
    if tb is None:
        return True  # made, not raised (e.g. a widget's own check): ours
    while tb.tb_next is not None:
        tb = tb.tb_next
    return in_package(tb.tb_frame.f_code.co_filename)


def is_user_error(exc: BaseException) -> bool:
    """Errors a user can act on: the package's own error types, a ValueError/TypeError
    raised by the package's validation, a missing optional dependency, a file problem
    (OSError with its path), memory that ran out. Anything else is unexpected: a bug to report."""
    if isinstance(exc, _user_error_types()):
        return True
    from ._device import with_memory_advice

    if with_memory_advice(exc) is not None:  # memory ran out: the machine's limit, not a bug
        return True
    if isinstance(exc, ImportError):  # a missing extra: the module's name, or the package's own hint
        return "crf" in type(exc).__name__.lower() or exc.name is not None or _raised_here(exc)
    if isinstance(exc, OSError):
        return exc.filename is not None
    if isinstance(exc, (ValueError, TypeError)):
        return _raised_here(exc)
    return False
