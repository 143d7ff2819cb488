"""Publishing artifacts safely: built under a lock, written under a temporary name, fsynced, renamed.

Runs may share an artifact folder (the benchmark's workers share teacher-output caches and memories), so
every artifact that is reused across runs follows one protocol:

1. :func:`build_lock` — an inter-process file lock (``<artifact>.lock`` beside it): whoever holds it opens
   or builds the artifact; the others wait for it and then open what it published.
2. :func:`staged_dir` / :func:`atomic_write_bytes` — the content is written under a temporary sibling name,
   fsynced, and renamed onto its final name in one step, so a reader never sees a partial artifact and a
   killed build leaves only a temporary name (removed on failure, ignored by readers).
3. :func:`follow_umask` — files get the permissions of any other file the user creates (``safetensors`` and
   ``tempfile`` write 0600).
4. :func:`reserved_npy` — a disk-backed array (teacher rows, teacher-output caches) has its whole size
   reserved when it is created, so a full disk is one clear error at the start, never a ``SIGBUS`` when a
   page of the memory map is first written.

:func:`sha256_file`, :func:`folder_weights_sha256` and :func:`model_weights_sha256` identify a teacher by its
weights, for the artifacts that depend on it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from filelock import FileLock
from numpy.lib.format import open_memmap

from fsdkit.errors import ConfigError


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def follow_umask(*paths: str | os.PathLike) -> None:
    """Give each file (or every file under each folder: only folders fsdkit made itself, such as a staged one) mode
    ``0o666 & ~umask``. A symbolic link is never followed: its target is not fsdkit's."""
    mode = 0o666 & ~current_umask()
    for path in map(Path, paths):
        if path.is_symlink():
            continue
        files = [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()] if path.is_dir() else [path]
        for file in files:
            os.chmod(file, mode)


def check_output_dir(
    path: str | os.PathLike, option: str = "output-dir", keep: dict[str, str | os.PathLike | None] | None = None
) -> Path:
    """Create ``path`` if needed and make sure files can be written in it; :class:`ConfigError` otherwise.

    ``keep``: what the run reads and must not overwrite (``{"--teacher": folder, "--train-file": file, …}``): the
    output folder may be none of those folders, nor a folder that holds one of them (a data file's folder: the run's
    files would land among the user's own)."""
    import tempfile

    out = Path(path).expanduser()
    refuse_overlap(out, option, keep or {})
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--{option} {out} is a file; give a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise ConfigError(
            f"--{option} {out} cannot be written ({exc.strerror or exc}); choose a writable folder"
        ) from None
    return out


def check_output_file(
    path: str | os.PathLike,
    option: str = "output",
    keep: dict[str, str | os.PathLike | None] | None = None,
    name: str | None = None,
) -> Path:
    """Check before any work that the file ``path`` can be written: not a folder, not under a file, writable (if it
    exists) in a writable folder (created if missing), and not one of the files the command reads (``keep``, by
    flag: a file given, or an existing file inside a folder given, such as a GLUE folder's ``test.tsv``). Errors
    name it as ``name`` (default ``--OPTION PATH``)."""
    import tempfile

    out = Path(path).expanduser()
    target = out.resolve()
    name = name or f"--{option} {out}"
    for flag, source in (keep or {}).items():
        held = Path(str(source)).expanduser() if source is not None else None
        if held is None or not held.exists():
            continue
        held = held.resolve()
        if held == target or (held.is_dir() and target.is_file() and held in target.parents):
            what = f"is {flag} {source}" if held == target else f"is a file of {flag} {source}"
            raise ConfigError(f"{name} {what}: writing there would replace your input; choose another file")
    if out.is_dir():
        raise ConfigError(f"{name} is a folder; give a file name")
    blocking = blocking_file(out)
    if blocking is not None:
        raise ConfigError(f"{name}: {blocking} is a file, so no folder can be made there")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out.parent):
            pass
        if out.exists() and not os.access(out, os.R_OK | os.W_OK):
            raise PermissionError(13, "read-only")
    except OSError as exc:
        raise ConfigError(f"{name} cannot be written ({exc.strerror or exc}); choose a writable file") from None
    return out


def blocking_file(path: Path) -> Path | None:
    """The first folder above ``path`` that exists as a file (no folder can then be made there), or None."""
    return next((p for p in path.parents if p.exists() and not p.is_dir()), None)


def refuse_overlap(out: Path, option: str, keep: dict[str, str | os.PathLike | None]) -> None:
    """:class:`ConfigError` when ``out`` is one of ``keep``'s local paths or a folder above one of them."""
    target = out.expanduser().resolve()
    for flag, source in keep.items():
        if source is None or not Path(str(source)).expanduser().exists():
            continue  # a hub name, or nothing given
        held = Path(str(source)).expanduser().resolve()
        if target == held or target in held.parents:
            what = "is" if target == held else "holds"
            raise ConfigError(
                f"--{option} {out} {what} {flag} {source}: the run's files would overwrite or mix with "
                f"it; write to a folder of its own"
            )


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return  # some file systems do not open folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def artifact_lock(artifact: str | os.PathLike) -> FileLock:
    """The inter-process lock of ``artifact`` (the file ``<artifact>.lock``): one instance per path in a process, so
    a holder may take it again (a caller that holds it around a function that takes it too, as the benchmark suite
    around :func:`fsdkit.build_memory`); another process waits."""
    artifact = Path(artifact)
    artifact.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(artifact.with_name(artifact.name + ".lock")), is_singleton=True)


@contextlib.contextmanager
def build_lock(artifact: str | os.PathLike, timeout: float = -1) -> Iterator[None]:
    """Hold the inter-process lock of ``artifact`` (:func:`artifact_lock`); waits for another holder."""
    lock = artifact_lock(artifact)
    lock.acquire(timeout=timeout)
    try:
        yield
    finally:
        lock.release()


def reserved_npy(path: str | os.PathLike, shape: tuple[int, ...], dtype=np.float32) -> np.memmap:
    """A new ``.npy`` file of ``shape`` opened as a writable memory map, with all its bytes allocated on disk now.

    A memory map over a sparse file is killed by ``SIGBUS`` when a write finds the disk full; reserving the
    blocks first (``posix_fallocate``) turns that into a :class:`~fsdkit.errors.ConfigError` naming the folder,
    the size needed and the space free. The file is removed when the reservation fails.
    """
    path = Path(path)
    array = open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    size = path.stat().st_size
    try:
        with open(path, "r+b") as handle:
            if hasattr(os, "posix_fallocate") and size:
                os.posix_fallocate(handle.fileno(), 0, size)
        return array
    except OSError as exc:
        error = exc
    del array
    path.unlink(missing_ok=True)
    if error.errno not in (errno.ENOSPC, errno.EDQUOT):
        raise error
    free = shutil.disk_usage(path.parent).free
    raise ConfigError(
        f"not enough disk space in {path.parent} for {path.name}: it needs {size / 2**30:.2f} GiB and "
        f"{free / 2**30:.2f} GiB are free; free some space or point the work folder (or $TMPDIR) at a larger disk"
    ) from error


def temporary_sibling(final: Path) -> Path:
    """A unique hidden name beside ``final`` (same file system, so the rename is atomic)."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def remove_stale_temporaries(final: Path) -> list[Path]:
    """Remove the temporary siblings of ``final`` (:func:`temporary_sibling`) whose process is gone: a build killed
    with SIGKILL (no cleanup ran) would otherwise leave a full-size folder forever. Returns what was removed."""
    removed = []
    for candidate in final.parent.glob(f".{final.name}.tmp-*"):
        pid = candidate.name[len(f".{final.name}.tmp-") :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _process_alive(int(pid)):
            continue
        shutil.rmtree(candidate, ignore_errors=True) if candidate.is_dir() else candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder; on success publish it as ``final`` (replacing it), on failure remove it.

    Publishing fsyncs every file, applies the umask, and renames the folder; an existing ``final`` is removed
    first (hold :func:`build_lock` so no reader is using it).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    tmp = temporary_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                _fsync_path(file)
        follow_umask(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_path(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling, fsync and rename (readers see old or new)."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        follow_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_json_object(path: str | os.PathLike, error: type[Exception] = ValueError) -> dict:
    """The JSON object stored in ``path``; ``error`` naming the file when it is not valid JSON or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, computed once per process for a file of the same size and modification time
    (a run hashes its teacher's weights for the cache, the memory check and the memory build)."""
    stat = os.stat(path)
    return _sha256_of(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def folder_weights_sha256(folder: str | os.PathLike) -> str | None:
    """sha256 of a model folder's ``model.safetensors``; of sharded weights (``model-*-of-*.safetensors``, else
    ``pytorch_model*.bin``), of each shard's name and sha256 in order; None when the folder holds no weight file."""
    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        return sha256_file(folder / "model.safetensors")
    shards = sorted(folder.glob("model-*-of-*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not shards:
        return None
    digest = hashlib.sha256()
    for shard in shards:
        digest.update(shard.name.encode())
        digest.update(sha256_file(shard).encode())
    return digest.hexdigest()


def model_weights_sha256(model) -> str:
    """sha256 of a model's ``model.safetensors`` when it was loaded from a folder, else of its tensors."""
    folder = Path(str(getattr(model.config, "_name_or_path", "") or getattr(model, "name_or_path", "")))
    weights = folder / "model.safetensors"
    if weights.is_file():
        return sha256_file(weights)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()
