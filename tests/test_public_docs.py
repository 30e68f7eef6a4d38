"""The public API (``napari_gardenseg._EXPORTS``) says in its docstrings what it takes, what it
returns and what it raises: every function names each of its parameters, says what it returns
and ends with a paragraph starting "Raises" (the exceptions it raises, found in the code it
calls, or "Raises nothing"); every class has a docstring of its own that names its fields."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

import napari_gardenseg as gs

# Names whose docstrings are completed in another change (``train``: _training.py, ``adapt``:
# _adapt.py): remove each from this set once its docstring passes these tests.
_DONE_ELSEWHERE: set[str] = set()

# Classes whose fields are described elsewhere for now, with where: their module was outside the
# change that added these tests.
_FIELDS_DESCRIBED_ELSEWHERE: dict[str, str] = {}

_PUBLIC = sorted(name for name in gs._EXPORTS if name not in _DONE_ELSEWHERE)
_FUNCTIONS = [name for name in _PUBLIC if inspect.isfunction(getattr(gs, name))]
_CLASSES = [name for name in _PUBLIC if inspect.isclass(getattr(gs, name))]

# the word a sentence saying what a function returns holds ("Returns ...", "Return ``image`` as ...",
# "... returns the checkpoint's path")
_RETURNS = re.compile(r"\b[Rr]eturns?\b")
# what a Raises paragraph names: an exception class of Python's or the package's, or "nothing"
_RAISED = re.compile(r"\b(?:[A-Z]\w*(?:Error|Exception|Warning)|Cancelled|KeyboardInterrupt|nothing)\b")


def _paragraphs(doc: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", doc) if p.strip()]


def _own_doc(cls: type) -> str:
    """The class's own docstring: not a base class's (which ``inspect.getdoc`` falls back to), nor
    the signature a dataclass writes in place of a missing one."""
    doc = inspect.cleandoc(vars(cls).get("__doc__") or "")
    return "" if doc.startswith(f"{cls.__name__}(") else doc


def test_every_public_name_is_checked_or_set_aside():
    assert _DONE_ELSEWHERE <= set(gs._EXPORTS)
    callables = {name for name in gs._EXPORTS if callable(getattr(gs, name))}
    assert callables - _DONE_ELSEWHERE == set(_FUNCTIONS) | set(_CLASSES)
    assert {"segment", "load_model", "to_coco"} <= set(_FUNCTIONS)
    assert {"Model", "SegmentationResult", "ModelError"} <= set(_CLASSES)


@pytest.mark.parametrize("name", _FUNCTIONS)
def test_a_function_ends_with_what_it_raises(name):
    doc = inspect.getdoc(getattr(gs, name)) or ""
    paragraphs = _paragraphs(doc)
    assert paragraphs, f"{name} has no docstring"
    last = paragraphs[-1]
    assert last.startswith("Raises"), (
        f"{name}'s docstring must end with a paragraph starting 'Raises' (the exceptions it raises, or "
        f"'Raises nothing'); it ends with: {last[:200]!r}"
    )
    assert _RAISED.search(last), f"{name}'s Raises paragraph names no exception: {last[:200]!r}"


@pytest.mark.parametrize("name", _FUNCTIONS)
def test_a_function_says_what_it_returns(name):
    fn = getattr(gs, name)
    if inspect.signature(fn).return_annotation in (None, "None"):
        pytest.skip(f"{name} returns None")
    doc = inspect.getdoc(fn) or ""
    assert _RETURNS.search(doc), f"{name}'s docstring does not say what it returns (no 'Returns'/'returns')"


@pytest.mark.parametrize("name", _FUNCTIONS)
def test_a_function_names_its_parameters(name):
    fn = getattr(gs, name)
    doc = inspect.getdoc(fn) or ""
    missing = [p for p in inspect.signature(fn).parameters if not re.search(rf"\b{re.escape(p)}\b", doc)]
    assert not missing, f"{name}'s docstring does not mention its parameters {missing}"


@pytest.mark.parametrize("name", _CLASSES)
def test_a_class_has_its_own_docstring(name):
    cls = getattr(gs, name)
    doc = _own_doc(cls)
    assert doc, f"{name} has no docstring of its own"
    if issubclass(cls, BaseException):  # an exception says when it is raised
        assert len(doc.split()) >= 5, f"{name}'s docstring does not say when it is raised: {doc!r}"


@pytest.mark.parametrize("name", [n for n in _CLASSES if dataclasses.is_dataclass(getattr(gs, n))])
def test_a_dataclass_names_its_fields(name):
    if name in _FIELDS_DESCRIBED_ELSEWHERE:
        pytest.skip(f"{name}'s fields are described in {_FIELDS_DESCRIBED_ELSEWHERE[name]}")
    cls = getattr(gs, name)
    doc = _own_doc(cls)
    fields = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
    missing = [f for f in fields if not re.search(rf"\b{re.escape(f)}\b", doc)]
    assert not missing, f"{name}'s docstring does not describe its fields {missing}"


def test_batch_summary_fields_are_described_where_said():
    doc = inspect.getdoc(gs.segment_files) or ""
    for field in ("BatchSummary", "files", "done", "skipped", "failed", "failures_path", "out_dir"):
        assert re.search(rf"\b{field}\b", doc), f"segment_files' docstring does not describe BatchSummary's {field}"


def test_coco_classes_is_described():
    """COCO_CLASSES is a tuple (no docstring of its own): its module's docstring describes it."""
    import napari_gardenseg._models as models

    assert isinstance(gs.COCO_CLASSES, tuple) and gs.COCO_CLASSES[0] == "__background__"
    assert "COCO_CLASSES" in (models.__doc__ or "")
