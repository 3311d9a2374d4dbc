"""What makes two captures the same: the key of the capture caches, in the run and across runs.

:func:`capture_key` is a SHA-256 (hex) over everything that can change the ops a capture records:

* the code the model runs: for every class of every submodule (and their base classes), its source,
  with the source of the functions, classes and plain constants its methods name at module level
  (a helper function beside the class counts); the qualified name where there is no source;
* each submodule's configuration: its plain attributes (a convolution's stride, a norm's eps, the
  training flag), tensors it holds outside its buffers (shape and dtype) and its hooks;
* parameters and buffers: names, shapes, dtypes (and whether a parameter is trained);
* the structure, shapes and dtypes of the inputs and targets (plain values by value);
* the loss and the optimizer factory, by the same code identity (a ``functools.partial`` with its
  arguments);
* torch's intra-op thread count during the capture (ATen picks some CPU kernels by it), the torch
  version, the source of the capture code itself and the workload schema version.

Not in the key: the chip, mesh and precision (they apply at simulation time) and parameter values
(a capture sees shapes only). Code from torch itself is named, not read: the torch version covers it.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import importlib
import inspect
import json
import types
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.utils._pytree as pytree

from hwmodel.step.workload import SCHEMA_VERSION
from pytest_dojo.capture.storage import dtype_name
from pytest_dojo.capture.train_step import check_model

CAPTURE_CODE = (
    "pytest_dojo.capture",
    "hwmodel.ops.flops",
    "hwmodel.ops.gemm",
    "hwmodel.ops.classes",
    "hwmodel.step.workload",
)
"""Modules (packages: every file in them) whose source decides what a capture records."""

HOOK_ATTRIBUTES = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
PLAIN_TYPES = (bool, int, float, str, type(None))

_SOURCE_DIGESTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
"""Source digest per class or function object: the code that object runs does not change."""


def capture_key(
    model: torch.nn.Module,
    example_inputs: Any,
    *,
    targets: Any = None,
    loss_fn: Any = None,
    optimizer: Any = None,
    name: str | None = None,
    intra_op_threads: int | None = None,
) -> str:
    """The hex SHA-256 of what determines the capture of ``model``'s step (see the module's docstring).

    ``intra_op_threads`` None means torch's current thread count, which the capture would use.
    """
    check_model(model)
    fields = {
        "workload_schema": SCHEMA_VERSION,
        "torch": torch.__version__,
        "capture_code": capture_code_digest(),
        "name": name,
        "code": sorted(code_digest(cls) for cls in _user_classes(model)),
        "modules": [(path, _configuration(module)) for path, module in model.named_modules()],
        "parameters": [(n, list(p.shape), dtype_name(p.dtype), p.requires_grad) for n, p in model.named_parameters()],
        "buffers": [(n, list(b.shape), dtype_name(b.dtype)) for n, b in model.named_buffers()],
        "inputs": _structure(example_inputs),
        "targets": _structure(targets),
        "loss_fn": callable_identity(loss_fn),
        "optimizer": callable_identity(optimizer),
        "intra_op_threads": torch.get_num_threads() if intra_op_threads is None else intra_op_threads,
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=_type_name)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def capture_code_digest() -> str:
    """SHA-256 of the capture code's source files (:data:`CAPTURE_CODE`), read once per process."""
    digest = hashlib.sha256()
    for module_name in CAPTURE_CODE:
        file = Path(importlib.import_module(module_name).__file__ or "")
        files = sorted(file.parent.rglob("*.py")) if file.name == "__init__.py" else [file]
        for path in files:
            digest.update(f"{module_name}/{path.relative_to(file.parent).as_posix()}".encode())
            digest.update(path.read_bytes() if path.is_file() else b"no-source")
    return digest.hexdigest()


def callable_identity(function: Any) -> Any:
    """A JSON-ready identity of a loss or optimizer factory: its code, and its arguments or settings."""
    if function is None:
        return None
    if isinstance(function, functools.partial):
        return {
            "partial": callable_identity(function.func),
            "args": [_value(argument) for argument in function.args],
            "keywords": {key: _value(value) for key, value in sorted(function.keywords.items())},
        }
    if isinstance(function, types.MethodType):
        return {"method": code_digest(function.__func__), "of": callable_identity(function.__self__)}
    if isinstance(function, type | types.FunctionType | types.BuiltinFunctionType):
        return code_digest(function)
    return {"type": code_digest(type(function)), "settings": _plain_attributes(function)}


def code_digest(code_object: Any) -> str:
    """The qualified name of a class or function with, for code outside torch, a digest of its source
    and of what its code names at module level (functions and classes recursively, constants by value)."""
    name = _qualified_name(code_object)
    if _is_torch_code(code_object):
        return name
    return f"{name}:{_source_digest(code_object)}:{_globals_digest(code_object)}"


def _source_digest(code_object: Any) -> str:
    """Digest of a class's or function's source ("no-source" where there is none), once per object."""
    digest = None
    with contextlib.suppress(TypeError):  # an object that cannot be weakly referenced is not memoized
        digest = _SOURCE_DIGESTS.get(code_object)
    if digest is None:
        digest = _read_source_digest(code_object)
        with contextlib.suppress(TypeError):
            _SOURCE_DIGESTS[code_object] = digest
    return digest


def _read_source_digest(code_object: Any) -> str:
    try:
        if isinstance(code_object, type):
            path = Path(inspect.getsourcefile(code_object) or "")
            stat = path.stat()
            return _class_digests(path, stat.st_mtime_ns, stat.st_size).get(code_object.__qualname__, "no-source")
        return _digest(inspect.getsource(code_object))
    except (OSError, TypeError):
        return "no-source"


@functools.lru_cache(maxsize=256)
def _class_digests(path: Path, mtime_ns: int, size: int) -> dict[str, str]:
    """Source digest of every class a file defines, by qualified name, from one parse of the file
    (what ``inspect.getsource`` would give, without parsing the file again for each class)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    found: dict[str, list[str]] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                first = min([child.lineno, *(decorator.lineno for decorator in child.decorator_list)])
                found.setdefault(prefix + child.name, []).append("".join(lines[first - 1 : child.end_lineno]))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, f"{prefix}{child.name}.<locals>.")
            else:
                visit(child, prefix)

    visit(ast.parse("".join(lines)), "")
    return {name: _digest("".join(sources)) for name, sources in found.items()}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _globals_digest(code_object: Any, seen: set[int] | None = None) -> str:
    """Digest of the module-level names that ``code_object``'s code reads, resolved now."""
    seen = set() if seen is None else seen
    seen.add(id(code_object))
    named: list[tuple[str, Any]] = []
    for function in _functions_of(code_object):
        namespace = function.__globals__
        for code in _code_objects(function.__code__):
            for global_name in code.co_names:
                if global_name in namespace:
                    named.append((global_name, namespace[global_name]))
    parts = []
    for global_name, value in sorted(named, key=lambda pair: pair[0]):
        if isinstance(value, (*PLAIN_TYPES, tuple, frozenset)):
            parts.append(f"{global_name}={value!r}")
        elif isinstance(value, type | types.FunctionType) and id(value) not in seen and not _is_torch_code(value):
            parts.append(f"{global_name}={_qualified_name(value)}:{_source_digest(value)}")
            parts.append(_globals_digest(value, seen))
    return _digest("\n".join(parts))


def _functions_of(code_object: Any) -> Iterator[types.FunctionType]:
    """The Python functions of a function (itself) or a class (its methods and properties)."""
    if isinstance(code_object, types.FunctionType):
        yield code_object
        return
    for attribute in vars(code_object).values() if isinstance(code_object, type) else ():
        if isinstance(attribute, staticmethod | classmethod):
            attribute = attribute.__func__
        if isinstance(attribute, property):
            yield from (f for f in (attribute.fget, attribute.fset) if isinstance(f, types.FunctionType))
        elif isinstance(attribute, types.FunctionType):
            yield attribute


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    """A code object and those nested in it (comprehensions, inner functions)."""
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _code_objects(constant)


def _user_classes(model: torch.nn.Module) -> set[type]:
    """The classes of every submodule and their bases, but torch's own (named in the modules' configuration)."""
    return {
        cls
        for module in model.modules()
        for cls in type(module).__mro__
        if cls is not object and not _is_torch_code(cls)
    }


def _configuration(module: torch.nn.Module) -> dict[str, Any]:
    """A submodule's class, plain attributes, tensors held outside its buffers, and hooks."""
    hooks = {
        attribute: [callable_identity(hook) for hook in getattr(module, attribute, {}).values()]
        for attribute in HOOK_ATTRIBUTES
        if getattr(module, attribute, None)
    }
    return {"class": _qualified_name(type(module)), "settings": _plain_attributes(module), "hooks": hooks}


def _plain_attributes(instance: Any) -> dict[str, Any]:
    """An object's attributes that are plain values, tensors (by shape and dtype) or functions (by code)."""
    attributes = getattr(instance, "__dict__", {})
    return {
        key: _value(value)
        for key, value in sorted(attributes.items())
        if _is_plain(value) or isinstance(value, types.FunctionType | types.BuiltinFunctionType | functools.partial)
    }


def _is_plain(value: Any) -> bool:
    if isinstance(value, (*PLAIN_TYPES, torch.dtype, torch.Size, torch.Tensor)):
        return True
    return isinstance(value, tuple | list) and all(_is_plain(item) for item in value)


def _value(value: Any) -> Any:
    """A JSON-ready stand-in for an argument or attribute value."""
    if isinstance(value, torch.Tensor):
        return {"tensor": list(value.shape), "dtype": dtype_name(value.dtype)}
    if isinstance(value, PLAIN_TYPES):
        return value
    if isinstance(value, tuple | list):
        return [_value(item) for item in value]
    if isinstance(value, torch.dtype | torch.Size):
        return str(value)
    if callable(value):
        return callable_identity(value)
    return _type_name(value)


def _structure(tree: Any) -> Any:
    """The pytree structure of inputs or targets and each leaf: a tensor's shape and dtype, else its value."""
    leaves, spec = pytree.tree_flatten(tree)
    return [str(spec), [_value(leaf) if _is_plain(leaf) else _type_name(leaf) for leaf in leaves]]


def _is_torch_code(code_object: Any) -> bool:
    module = getattr(code_object, "__module__", None) or ""
    return module == "builtins" or module.split(".")[0] == "torch"


def _qualified_name(code_object: Any) -> str:
    module = getattr(code_object, "__module__", None) or ""
    return f"{module}.{getattr(code_object, '__qualname__', type(code_object).__qualname__)}"


def _type_name(value: Any) -> str:
    """An object the key cannot read, by its type (never its repr: that may hold an address)."""
    return f"<{_qualified_name(type(value))}>"
