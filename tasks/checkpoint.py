"""Safe, exact checkpoints for mmengine runs.

mmengine 0.10.7 pickles Python objects into its checkpoints: the message hub's ``HistoryBuffer``s,
numpy arrays and scalars, ``Counter``s of milestones, bound methods of some schedulers. torch's
``torch.load`` refuses those under its default ``weights_only=True``, so a stock mmengine
checkpoint cannot be resumed safely. Instead of switching safety off, :class:`SafeCheckpointHook`

* in ``before_save_checkpoint`` (called by ``Runner.save_checkpoint`` just before ``torch.save``)
  rewrites every value torch's safe unpickler would refuse into tensors, bytes, lists and dicts,
  tagged with ``"__glocal__"`` so that it can be rebuilt, and adds the RNG states (torch, numpy,
  Python ``random``, CUDA) so that a resumed run draws the same dropout masks;
* in ``after_load_checkpoint`` (called by ``Runner.load_checkpoint`` right after ``torch.load``,
  before ``Runner.resume`` loads the weights, the message hub, the optimizer and the schedulers
  from that same dict) decodes the tagged values in place, keeps the RNG states aside and drops
  the schedule *shape* (``begin``/``end``/``T_max``/...) from the saved scheduler states, so the
  schedulers built from the current config keep their shape and only their progress is restored
  (mmengine would otherwise keep the old ``end`` when a run is resumed with more epochs);
* in ``before_train`` (the first thing the train loop does, after ``Runner.resume`` has run and
  possibly re-seeded the RNGs from the checkpoint's seed) restores the RNG states, when resuming
  (not when fine-tuning from ``load_from``).

Together with glocal's data loaders (augmentation seeded per sample by the sampler, a private
``torch.Generator`` per loader so that creating an iterator draws nothing from the global RNG)
this makes N steps + resume + N steps equal to 2N straight steps, bit for bit, on CPU. In
distributed runs the checkpoint holds rank 0's RNG states, which every rank restores: exact
when the ranks share a seed (``randomness.diff_rank_seed=False``, the default).

Only an explicit table of types is encoded and decoded: decoding never imports a class named in
the file, which is what makes ``weights_only=True`` safe in the first place.

Model weights travel as safetensors (:func:`save_safetensors`, :func:`load_weights`).
"""
from __future__ import annotations

import collections
import hashlib
import logging
import os
import pickle
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import HistoryBuffer, print_log
from torch import nn

from glocal.core.errors import GlocalError

__all__ = ["CheckpointError", "SafeCheckpointHook", "encode_state", "decode_state", "get_rng_state",
           "set_rng_state", "load_weights", "save_safetensors", "read_state_dict", "parameter_digest",
           "SCHEDULER_PROGRESS_KEYS", "read_checkpoint", "commit_checkpoint", "verify_checkpoint",
           "latest_checkpoint", "check_fits", "strip_module_prefix", "write_atomic", "AtomicCheckpointHook",
           "assert_finite_weights"]

TAG = "__glocal__"
RNG_KEY = "rng_state"
# What a parameter scheduler's state keeps across a resume: its progress. Everything else in
# mmengine's scheduler state (begin, end, T_max, milestones, factors, ...) is rebuilt from the config.
SCHEDULER_PROGRESS_KEYS = ("last_step", "_global_step", "_last_value", "base_values", "best",
                           "num_bad_epochs", "cooldown_counter", "last_epoch")


class CheckpointError(GlocalError, RuntimeError):
    """A checkpoint cannot be written safely, read, or does not fit the model."""


# ------------------------------------------------------------------------------------------------
# encode / decode: Python objects <-> what torch.load(weights_only=True) accepts
# ------------------------------------------------------------------------------------------------
_PLAIN = (bool, int, float, complex, str, bytes, type(None), torch.dtype, torch.device, torch.Size)


def _np_array(arr: np.ndarray, path: str) -> dict:
    if arr.dtype.hasobject:
        raise CheckpointError(f"checkpoint value at {path}: numpy array of Python objects cannot be saved safely")
    return {TAG: "numpy.ndarray", "dtype": arr.dtype.str, "shape": list(arr.shape),
            "data": np.ascontiguousarray(arr).tobytes()}


def encode_state(obj: Any, path: str = "checkpoint") -> Any:
    """Rewrite ``obj`` into tensors and plain containers that ``torch.load(weights_only=True)``
    accepts; values it would refuse become tagged dicts (see :func:`decode_state`)."""
    if isinstance(obj, torch.Tensor) or type(obj) in _PLAIN:
        return obj
    if isinstance(obj, np.ndarray):
        return _np_array(obj, path)
    if isinstance(obj, np.generic):
        return {TAG: "numpy.scalar", **{k: v for k, v in _np_array(np.asarray(obj), path).items() if k != TAG}}
    if isinstance(obj, HistoryBuffer):
        return {TAG: "mmengine.HistoryBuffer", "max_length": int(obj.max_length),
                "log": _np_array(obj._log_history, path), "count": _np_array(obj._count_history, path)}
    if isinstance(obj, collections.Counter):
        return {TAG: "Counter", "items": [[encode_state(k, path), encode_state(v, path)] for k, v in obj.items()]}
    if isinstance(obj, (set, frozenset)):
        return {TAG: type(obj).__name__, "items": [encode_state(v, path) for v in obj]}
    if isinstance(obj, collections.OrderedDict) and type(obj) is collections.OrderedDict:
        out = collections.OrderedDict((k, encode_state(v, f"{path}.{k}")) for k, v in obj.items())
        if hasattr(obj, "_metadata"):  # a module state dict's version metadata
            out._metadata = obj._metadata
        return out
    if isinstance(obj, dict):  # dict subclasses (ConfigDict, defaultdict) are stored as plain dicts
        if all(type(k) in _PLAIN for k in obj):
            return {k: encode_state(v, f"{path}.{k}") for k, v in obj.items()}
        return {TAG: "dict", "items": [[encode_state(k, path), encode_state(v, f"{path}.{k}")] for k, v in obj.items()]}
    if type(obj) in (list, tuple):
        return type(obj)(encode_state(v, f"{path}[{i}]") for i, v in enumerate(obj))
    raise CheckpointError(
        f"checkpoint value at {path} has type {type(obj).__module__}.{type(obj).__qualname__}, which "
        f"torch.load(weights_only=True) refuses and glocal does not know how to store as plain data; "
        f"keep checkpoint contents to tensors, numbers, strings and containers")


def _decode_array(d: Mapping) -> np.ndarray:
    return np.frombuffer(d["data"], dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


def decode_state(obj: Any) -> Any:
    """Inverse of :func:`encode_state` (a fixed table of types; nothing is imported by name)."""
    if isinstance(obj, Mapping):
        tag = obj.get(TAG) if isinstance(obj, dict) else None
        if tag is None:
            out = type(obj)((k, decode_state(v)) for k, v in obj.items())
            if hasattr(obj, "_metadata"):
                out._metadata = obj._metadata
            return out
        if tag == "numpy.ndarray":
            return _decode_array(obj)
        if tag == "numpy.scalar":
            return _decode_array(obj)[()]
        if tag == "mmengine.HistoryBuffer":
            buf = HistoryBuffer(max_length=obj["max_length"])
            buf._log_history, buf._count_history = _decode_array(obj["log"]), _decode_array(obj["count"])
            return buf
        if tag == "Counter":
            return collections.Counter({decode_state(k): decode_state(v) for k, v in obj["items"]})
        if tag in ("set", "frozenset"):
            return (set if tag == "set" else frozenset)(decode_state(v) for v in obj["items"])
        if tag == "dict":
            return {_hashable(decode_state(k)): decode_state(v) for k, v in obj["items"]}
        raise CheckpointError(f"checkpoint holds an unknown tagged value {tag!r} (written by a newer glocal?)")
    if type(obj) in (list, tuple):
        return type(obj)(decode_state(v) for v in obj)
    return obj


def _hashable(k):
    return tuple(_hashable(v) for v in k) if isinstance(k, list) else k


# ------------------------------------------------------------------------------------------------
# RNG states
# ------------------------------------------------------------------------------------------------
def get_rng_state() -> dict:
    """The global RNG states a training step can draw from: torch (CPU and CUDA), numpy, random."""
    state = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    """Inverse of :func:`get_rng_state` (states loaded onto a GPU by ``map_location`` are fine)."""
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(tuple(state["numpy"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ------------------------------------------------------------------------------------------------
# the hook
# ------------------------------------------------------------------------------------------------
class SafeCheckpointHook(Hook):
    """Makes mmengine checkpoints load under ``weights_only=True`` and resume exactly.

    Priority ``LOWEST``: it encodes after every other hook added its entries to the checkpoint,
    and restores the RNG states last in ``before_train``, right before the first step.
    """

    priority = "LOWEST"

    def __init__(self):
        self._pending_rng = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for states in _scheduler_states(checkpoint):
            for state in states:  # bound methods (OneCycle's anneal_func) are rebuilt from the config
                for key in [k for k, v in state.items() if callable(v) and not isinstance(v, torch.Tensor)]:
                    del state[key]
        checkpoint[RNG_KEY] = get_rng_state()
        for key in list(checkpoint):
            checkpoint[key] = encode_state(checkpoint[key], key)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in list(checkpoint):
            checkpoint[key] = decode_state(checkpoint[key])
        rng = checkpoint.pop(RNG_KEY, None)
        # only a resumed run continues the RNG streams; fine-tuning from `load_from` does not
        self._pending_rng = rng if getattr(runner, "_resume", False) else None
        for states in _scheduler_states(checkpoint):
            for state in states:
                for key in [k for k in state if k not in SCHEDULER_PROGRESS_KEYS]:
                    del state[key]

    def before_train(self, runner) -> None:
        if self._pending_rng is not None:
            set_rng_state(self._pending_rng)
            self._pending_rng = None
            if runner.world_size > 1:
                print_log("restored rank 0's RNG states on every rank (exact when ranks share a seed, "
                          "randomness.diff_rank_seed=False)", logger="current")


class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments; configs keep ``type='CheckpointHook'``) with
    a crash-safe order: the new checkpoint is written completely (``Runner.save_checkpoint`` of
    glocal's runner writes a ``.part`` file and renames it), then ``last_checkpoint`` points at it,
    and only then are checkpoints beyond ``max_keep_ckpts`` removed. mmengine removes the oldest
    before writing, so a crash during the save could leave nothing to resume from. Weights that are
    not finite are never saved: the run stops instead (the last good checkpoint stays)."""

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self.keep_ckpt_ids = collections.deque(self.keep_ckpt_ids)  # no maxlen: rotation happens here
        if is_main_process():
            for stale in Path(self.out_dir).glob(f"*{PART}"):  # left by a crash during a save
                runner.logger.info(f"removing {stale}, a checkpoint whose save was interrupted")
                stale.unlink(missing_ok=True)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        assert_finite_weights(runner.model, f"checkpoint {self.filename_tmpl.format(step)}")
        doomed = []
        if self.max_keep_ckpts > 0 and (not self.keep_ckpt_ids or self.keep_ckpt_ids[-1] != step):
            self.keep_ckpt_ids.append(step)
            while len(self.keep_ckpt_ids) > self.max_keep_ckpts:
                doomed.append(self.keep_ckpt_ids.popleft())
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        runner.save_checkpoint(self.out_dir, filename, self.file_client_args, save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                               backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        write_atomic(Path(runner.work_dir) / "last_checkpoint", self.last_ckpt)
        for old in doomed:  # only now that the new checkpoint is complete
            path = Path(self.out_dir) / self.filename_tmpl.format(old)
            for f in (path, path.with_name(path.name + SUM)):
                f.unlink(missing_ok=True)


def assert_finite_weights(model: nn.Module, what: str) -> None:
    """Raise :class:`CheckpointError` when a parameter or buffer of ``model`` holds NaN or inf."""
    for name, t in getattr(model, "module", model).state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"not saving {what}: {name} holds NaN or inf (the run diverged); the last "
                                  f"checkpoint saved before this one is the last good one")


def _scheduler_states(checkpoint: Mapping):
    sched = checkpoint.get("param_schedulers")
    if isinstance(sched, Mapping):  # one list per optimizer
        yield from (s for s in sched.values() if isinstance(s, list))
    elif isinstance(sched, list):
        yield [s for s in sched if isinstance(s, dict)]


# ------------------------------------------------------------------------------------------------
# files: crash-safe writing, one safe reader, choosing what to resume from
# ------------------------------------------------------------------------------------------------
PART = ".part"  # a checkpoint being written: never read, never chosen by auto-resume
SUM = ".sha256"  # sidecar: '<sha256> <size>' of the complete file


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest(), path.stat().st_size


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write a small file so that readers see the old content or the new one, never a mix."""
    path = Path(path)
    part = path.with_name(path.name + PART)
    with open(part, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)
    _fsync_dir(path.parent)


def commit_checkpoint(part: str | Path, final: str | Path) -> Path:
    """Make a fully written ``part`` file the checkpoint ``final``: fsync it, rename it atomically
    (a crash leaves either the old state or the complete new file), then record its checksum."""
    part, final = Path(part), Path(final)
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    digest, size = _digest(part)
    os.replace(part, final)
    _fsync_dir(final.parent)
    write_atomic(final.with_name(final.name + SUM), f"{digest} {size}\n")
    return final


def verify_checkpoint(path: str | Path) -> None:
    """Check a checkpoint against its checksum sidecar (files without one pass: the zip reader
    still catches truncation). Raises :class:`CheckpointError`."""
    path = Path(path)
    side = path.with_name(path.name + SUM)
    if not side.is_file():
        return
    try:
        want, size = side.read_text().split()
    except ValueError:
        raise CheckpointError(f"checksum file {side} is unreadable; delete it to load {path} unchecked") from None
    if path.stat().st_size != int(size) or _digest(path)[0] != want:
        raise CheckpointError(f"checkpoint {path} does not match its checksum ({side}): the file was changed or "
                              f"cut short after it was saved; resume from an older checkpoint")


def read_checkpoint(path: str | Path) -> Any:
    """Every checkpoint glocal reads goes through here: a checksum check, then ``torch.load`` with
    ``weights_only=True`` (nothing in the file is executed), with glocal's errors for a missing,
    truncated, foreign or malicious file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    if path.name.endswith(PART):
        raise CheckpointError(f"{path} is a checkpoint that was still being written (a crash during the save); "
                              f"use the complete checkpoint next to it")
    verify_checkpoint(path)
    with open(path, "rb") as f:
        head = f.read(4)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        what = str(e)
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", what)
        name = found.group(1) if found else "a Python object"
        raise CheckpointError(
            f"refused to load {path}: it asks to import {name} while unpickling, which could run code. "
            f"Nothing from it was executed. glocal's checkpoints hold tensors and plain data only; load "
            f"files only from sources you trust, and re-save foreign ones as safetensors in a trusted "
            f"session") from e
    except Exception as e:  # noqa: BLE001 - torch's unpickler fails on foreign bytes in many ways
        if head[:2] == b"PK" or not head:
            raise CheckpointError(f"checkpoint {path} is incomplete ({path.stat().st_size} bytes; cut short while "
                                  f"being written or copied): {str(e).splitlines()[0]}; use an older "
                                  f"checkpoint") from e
        raise CheckpointError(f"{path} is not a torch checkpoint glocal can read ({str(e).splitlines()[0]})") from e


def _step_of(path: Path) -> int:
    found = re.search(r"(\d+)", path.stem)
    return int(found.group(1)) if found else -1


def latest_checkpoint(work_dir: str | Path) -> Path | None:
    """What auto-resume continues from: ``last_checkpoint``'s file when it exists and is complete,
    else the newest complete ``epoch_*.pth`` / ``iter_*.pth`` in ``work_dir`` (a file being
    written, ``*.part``, is never chosen). ``None`` when there is none."""
    work_dir = Path(work_dir)
    pointer = work_dir / "last_checkpoint"
    candidates = sorted((p for p in work_dir.glob("*.pth") if re.match(r"(epoch|iter)_\d+\.pth$", p.name)),
                        key=_step_of, reverse=True)
    if pointer.is_file():
        named = Path(pointer.read_text().strip())
        candidates = [named] + [p for p in candidates if p.resolve() != named.resolve()]
    for path in candidates:
        try:
            if path.is_file():
                verify_checkpoint(path)
                return path
        except CheckpointError as e:
            print_log(f"auto-resume skips {path}: {e}", logger="current", level=logging.WARNING)
    return None


# ------------------------------------------------------------------------------------------------
# weights: .pth (mmengine checkpoint or bare state dict) and .safetensors
# ------------------------------------------------------------------------------------------------
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Model weights from an mmengine ``.pth`` checkpoint (read by :func:`read_checkpoint`), a bare
    state dict, or a ``.safetensors`` file; a DDP ``module.`` prefix is stripped."""
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"weights file {path} does not exist")
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"cannot read {path} as safetensors ({str(e).splitlines()[0]}); the file is "
                                  f"damaged or not a safetensors file") from e
    else:
        ckpt = read_checkpoint(path)
        state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else ckpt
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path} holds no state dict of tensors (found {type(state).__name__})")
    return strip_module_prefix(state)


def strip_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict without DDP's ``module.`` prefix on its keys."""
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def check_fits(model: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Raise :class:`CheckpointError` naming the first missing, unexpected and differently shaped
    tensors when ``state`` is not exactly the weights of ``model``."""
    own = getattr(model, "module", model).state_dict()
    missing = [k for k in own if k not in state]  # in the model's order: the first differing tensors first
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in own.items() if k in state and tuple(v.shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        def show(keys):
            return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
        parts = [f"shape mismatches: {show(shapes)}" if shapes else "",
                 f"missing keys: {show(missing)}" if missing else "",
                 f"unexpected keys: {show(unexpected)}" if unexpected else ""]
        raise CheckpointError(f"weights in {source} do not fit {type(getattr(model, 'module', model)).__name__} "
                              f"(a checkpoint of another model or config?): " + "; ".join(p for p in parts if p))


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights from ``.pth`` or ``.safetensors`` into ``model``, strictly: a clear error lists
    the missing and unexpected keys (and shape mismatches) instead of torch's."""
    model = getattr(model, "module", model)
    state = read_state_dict(path)
    if Path(path).suffix == ".safetensors":  # tensors the file stored once for several names
        state = _unshare(model, state)
    check_fits(model, state, path)
    model.load_state_dict(state, strict=True)
    return model


def _unshare(model: nn.Module, state: dict) -> dict:
    """safetensors stores tied tensors once; give every alias of a stored tensor its value."""
    own = model.state_dict(keep_vars=True)
    by_storage: dict[tuple, list[str]] = collections.defaultdict(list)
    for k, v in own.items():
        if v.device.type != "meta" and v.numel():
            by_storage[(v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))].append(k)
    state = dict(state)
    for names in by_storage.values():
        present = [n for n in names if n in state]
        for n in names:
            if n not in state and present:
                state[n] = state[present[0]]
    return state


def save_safetensors(model: nn.Module, path: str | Path, metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``model``'s weights (parameters and persistent buffers) as safetensors; tensors that
    share memory (tied weights) are stored once."""
    from safetensors.torch import save_model
    model = getattr(model, "module", model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, str(path), metadata={"format": "pt", **dict(metadata or {})})
    return path


def parameter_digest(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of the parameters (or of a state dict's
    entries named like the parameters): equal digests mean bitwise-equal weights."""
    if isinstance(model_or_state, nn.Module):
        model = getattr(model_or_state, "module", model_or_state)
        items = dict(model.named_parameters())
    else:
        items = dict(model_or_state)
    h = hashlib.sha256()
    for name in sorted(items):
        t = items[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
