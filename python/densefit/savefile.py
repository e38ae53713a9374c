"""The save file's bytes on disk: written atomically, read without trusting them.

A save file is an ``.npz`` (a zip of ``.npy`` members): ``config`` (the model's JSON config as
uint8 bytes) and, for a built model, ``params``, ``slots`` and ``stats``. Reading checks the
archive's structure, every member's header against the bytes really there and the dtypes; what
the config says is checked where the model is rebuilt (:func:`densefit.model.load_model`).
Every defect is one ``ValueError`` starting with :data:`INVALID`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zipfile
import zlib

import numpy as np

INVALID = "not a valid densefit model file: "
_MEMBERS = ("config", "params", "slots", "stats")
_MAX_CONFIG_BYTES = 1 << 24
MAX_COUNTER = 1 << 62


def invalid(what: str) -> ValueError:
    return ValueError(INVALID + what)


def read_save_file(path) -> tuple[dict, dict]:
    """The config and the arrays of a save file, read without trusting it: the archive's members
    are npy headers whose declared sizes must match the bytes really there (so a lying header
    never allocates), plain numeric dtypes only (no pickles)."""
    try:
        archive = zipfile.ZipFile(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise invalid(f"not an npz archive ({exc})") from None
    with archive:
        names = {info.filename: info for info in archive.infolist()}
        unknown = sorted(set(names) - {m + ".npy" for m in _MEMBERS})
        if unknown:
            raise invalid(f"unexpected members {unknown}")
        if "config.npy" not in names:
            raise invalid("no config")
        arrays = {}
        for member in _MEMBERS:
            info = names.get(member + ".npy")
            if info is not None:
                arrays[member] = _read_member(archive, info, member)
    config_bytes = arrays.pop("config")
    if config_bytes.dtype != np.uint8 or config_bytes.ndim != 1 or config_bytes.size > _MAX_CONFIG_BYTES:
        raise invalid("the config is not a byte string of at most 16 MiB")
    try:
        config = json.loads(config_bytes.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid(f"the config is not JSON ({exc})") from None
    if not isinstance(config, dict):
        raise invalid("the config is not a JSON object")
    return config, arrays


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> np.ndarray:
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise invalid(f"{name} has npy format version {version}")
            if dtype.hasobject or dtype not in (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64)):
                raise invalid(f"{name} has dtype {dtype}; expected float32, float64 (or uint8 for the config)")
            declared = math.prod(shape) * dtype.itemsize
            held = info.file_size - f.tell()
            if declared != held:
                raise invalid(f"{name} declares {declared} bytes of data but holds {held}")
            data = f.read(declared)
    except ValueError as exc:
        if str(exc).startswith(INVALID):
            raise
        raise invalid(f"{name} is not a valid npy array ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise invalid(f"{name} cannot be read ({exc})") from None
    if len(data) != declared:
        raise invalid(f"{name} is truncated")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return np.ascontiguousarray(array).copy()


def write_atomically(path, write) -> None:
    """``write(f)`` into a temporary file in ``path``'s folder, fsync it, rename it over ``path``
    (and fsync the folder): ``path`` holds the old file or the whole new one, never a part, even
    if the process is killed or the disk fills."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 → what open() would have given
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # the rename's directory entry, where the OS allows it
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
