"""PyTorch checkpoints (``.pth`` / ``.pt``) as name -> float32 array mappings; torch optional.

Read with ``torch.load(path, map_location="cpu", weights_only=True)``: tensors, dicts and
plain values only, no code runs. A checkpoint that wraps its weights (``{"state_dict": ...}``
or ``{"model": ...}``) is unwrapped, and a ``module.`` prefix left by DataParallel is
stripped. Without torch installed a ``.pth`` cannot be read; convert it once on a machine with
torch (``fpxint convert``) and load the resulting ``.npz`` instead.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputError, missing_tool

__all__ = ["load_state_dict", "torch_available"]


def torch_available() -> bool:
    """True when ``import torch`` works."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def load_state_dict(path) -> dict[str, np.ndarray]:
    """The tensors of the checkpoint at ``path`` by name, as numpy arrays (float32 for floats).

    Raises ToolMissingError when torch is missing; InputError naming the file when it is not
    a checkpoint or holds no mapping of tensors.
    """
    try:
        import torch
    except ImportError:
        raise missing_tool("torch", "pip install 'torch==2.13.0' (or convert the checkpoint "
                           "once elsewhere with 'fpxint convert' and pass the .npz)",
                           what=str(path),
                           reason="reading a PyTorch checkpoint needs torch") from None
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, ...)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({msg})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise InputError(f"{path}: holds a {type(obj).__name__}, expected a state_dict "
                         f"(a mapping of parameter names to tensors)")
    out = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise InputError(f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor")
        a = v.detach().cpu().numpy()
        if np.issubdtype(a.dtype, np.floating):
            a = a.astype(np.float32)
        out[k[len("module."):] if k.startswith("module.") else k] = a
    if not out:
        raise InputError(f"{path}: the checkpoint holds no tensors")
    return out
