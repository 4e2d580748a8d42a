"""Sparse-convolution backend selection (spconv or a drop-in with the same API) and spconv's CPU workarounds.

``sparse_backend(name)`` returns the module that provides ``SparseConvTensor``, ``SubMConv3d``, ``SparseConv3d``
and ``SparseSequential``:

- ``'spconv'``: ``spconv.pytorch`` from the spconv 2.x wheels (``pip install spconv`` for CPU, ``spconv-cu1xx``
  for CUDA builds).
- ``'spconv-triton'``: the ``spconv_triton`` package's module with the same API, if installed.

Importing the ``'spconv'`` backend also installs the CPU workarounds below (one marked section, see
:func:`_install_cpu_workarounds`): backward without a CUDA driver, and spconv's multi-threaded CPU scatter-add.
"""

from __future__ import annotations

import importlib
import logging
import types

import torch

SPCONV_HINT = (
    'the segmentation network needs spconv 2.x: pip install -r requirements/spconv-cpu.txt (CPU) or '
    '-r requirements/spconv-cuda.txt (spconv-cu126, CUDA 12.x)'
)
SPCONV_TRITON_HINT = (
    "sparse_backend='spconv-triton' needs the spconv_triton package (same API as spconv.pytorch); install it, or "
    "use sparse_backend='spconv'"
)
_REQUIRED = ('SparseConvTensor', 'SubMConv3d', 'SparseConv3d', 'SparseSequential')
_CACHE: dict[str, types.ModuleType] = {}


# ------------------------------------------------------------------------------------------------------------------
# spconv CPU workarounds: the ONE place where we route around spconv (checked against spconv 2.3.8, cumm 0.7.11).
#
# 1. Backward fails on CPU. ``spconv.pytorch.ops.indice_conv_backward`` (the backward of every native sparse/SubM
#    convolution; on CPU all convolutions use the native algorithm) calls ``get_current_stream()`` - that is
#    ``torch.cuda.current_stream().cuda_stream`` from ``spconv/pytorch/cppcore.py`` - unconditionally, *before* it
#    branches on ``features.is_cuda``. Its CPU branch (gather -> mm -> scatter_add) never uses the stream, but on a
#    machine without a CUDA driver ``torch.cuda.current_stream()`` raises ("Found no NVIDIA driver"), so every
#    ``loss.backward()`` through a sparse convolution fails on CPU while the forward works.
#    Fix: the name ``get_current_stream`` *as bound in spconv.pytorch.ops* becomes a wrapper that returns the
#    null-stream handle 0 when CUDA is unavailable (then no tensor can be on a GPU, only CPU tensors reach the
#    call, and the value is unused) and calls spconv's own function otherwise.
#
# 2. Wrong results on CPU with more than one thread. spconv's CPU scatter-add kernel (``SpconvOps.scatter_add_cpu``,
#    used by the CPU forward and backward of every convolution) now and then drops or doubles one output row when
#    OpenMP runs it on 2+ threads (measured here: 6 of 5,200 calls on 1,400 voxels; test_segmentation_network.py
#    shows the effect through a whole convolution). Fix: ``ops.get_indice_pairs``, ``ops.indice_conv`` and
#    ``ops.indice_conv_backward`` run with ``torch.set_num_threads(1)`` when their first tensor is on the CPU, and
#    the previous thread count is restored afterwards. CUDA tensors take the untouched path.
#
# With CUDA available and CUDA tensors both wrappers are pass-throughs, so GPU training is unchanged.
# ------------------------------------------------------------------------------------------------------------------
_CPU_SINGLE_THREAD_OPS = ('get_indice_pairs', 'indice_conv', 'indice_conv_backward')


def _cpu_safe_stream(original):
    def get_current_stream():
        if not torch.cuda.is_available():
            return 0  # CPU only: spconv's CPU code paths ignore the stream handle
        return original()

    return get_current_stream


def _cpu_single_threaded(original):
    def wrapper(*args, **kwargs):
        first = args[0] if args else None
        threads = torch.get_num_threads()
        if threads == 1 or not isinstance(first, torch.Tensor) or first.device.type != 'cpu':
            return original(*args, **kwargs)
        torch.set_num_threads(1)
        try:
            return original(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


def _install_cpu_workarounds(spconv_ops: types.ModuleType) -> list[str]:
    """Apply both workarounds above to ``spconv_ops``; idempotent. Returns the names it wrapped this call."""
    wrapped = []
    factories = {'get_current_stream': _cpu_safe_stream, **dict.fromkeys(_CPU_SINGLE_THREAD_OPS, _cpu_single_threaded)}
    for name, factory in factories.items():
        original = getattr(spconv_ops, name, None)
        if original is None or getattr(original, '_pu_ros_cpu_safe', False):
            continue
        replacement = factory(original)
        replacement.__name__ = name
        replacement.__doc__ = getattr(original, '__doc__', None)
        replacement.__wrapped__ = original
        replacement._pu_ros_cpu_safe = True
        setattr(spconv_ops, name, replacement)
        wrapped.append(name)
    return wrapped


def _quiet_fx_tracing_notice() -> None:
    """Spend torch's once-per-process "is_fx_tracing will return true for ..." log line silently.

    ``SparseConvTensor.replace_feature`` calls ``torch.fx.is_fx_tracing()``, whose first call logs that notice (it
    is about torch.export, not about anything we do); it would otherwise appear in every ``pu-ros eval`` / train
    run. The notice is ``functools.lru_cache``'d, so one call with its logger raised to ERROR uses it up without
    muting any other torch log. Skipped silently if torch's internals differ.
    """
    try:
        from torch.fx import _symbolic_trace as fx_trace

        notice = fx_trace.is_fx_tracing_warning
    except (ImportError, AttributeError):
        return
    log = logging.getLogger(fx_trace.__name__)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        notice()
    finally:
        log.setLevel(level)


def sparse_backend(name: str = 'spconv') -> types.ModuleType:
    """The sparse-convolution module for ``name`` (``'spconv'`` or ``'spconv-triton'``), imported once.

    Raises:
        ImportError: the backend is not installed (the message says what to install).
        ValueError: unknown backend name.
    """
    if name in _CACHE:
        return _CACHE[name]
    if name == 'spconv':
        try:
            module = importlib.import_module('spconv.pytorch')
            ops = importlib.import_module('spconv.pytorch.ops')
        except ImportError as exc:
            raise ImportError(f'{SPCONV_HINT} ({exc})') from exc
        _install_cpu_workarounds(ops)
        _quiet_fx_tracing_notice()
    elif name == 'spconv-triton':
        module = None
        for candidate in ('spconv_triton.pytorch', 'spconv_triton'):
            try:
                module = importlib.import_module(candidate)
            except ImportError:
                continue
            if all(hasattr(module, attr) for attr in _REQUIRED):
                break
            module = None
        if module is None:
            raise ImportError(SPCONV_TRITON_HINT)
    else:
        raise ValueError(f"unknown sparse_backend {name!r}; use 'spconv' or 'spconv-triton'")
    missing = [attr for attr in _REQUIRED if not hasattr(module, attr)]
    if missing:
        raise ImportError(f'sparse backend {name!r} ({module.__name__}) lacks {", ".join(missing)}')
    _CACHE[name] = module
    return module
