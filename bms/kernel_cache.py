"""Keep numba's on-disk cache of the firmware kernels consistent with their sources.

numba's ``cache=True`` keys a cached kernel on the timestamp of the file that defines it, not
on the files it calls or whose constants it freezes (``bms.layout`` indices, ``bms.diag`` inlined
into ``bms.core.step``). After an edit of one of those, a stale compiled step would load
silently. :func:`check` digests all the sources the firmware kernels depend on and, when the
digest changed, deletes the cached kernels of the dependent modules (only their own
``*.nbi`` / ``*.nbc`` files) so that they recompile.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_PKG = Path(__file__).resolve().parent
#: sources whose code or constants end up inside the firmware kernels
DEPENDENCIES = ("layout.py", "diag_table.py", "diag.py", "contactors.py", "balancing.py", "limits.py",
                "core.py", "model.py", "soc/*.py")
#: modules whose cached kernels are dropped when a dependency changed
DEPENDENT = ("diag", "contactors", "balancing", "limits", "core")
_done: set = set()


def _digest() -> str:
    h = hashlib.sha256()
    for pattern in DEPENDENCIES:
        for path in sorted(_PKG.glob(pattern)):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def check(cache_dir: str | Path | None = None, modules: tuple[str, ...] = DEPENDENT) -> bool:
    """Drop stale cached kernels of ``modules`` in ``cache_dir`` (default: this package's) once
    per process and directory; returns True if anything was dropped. Code outside the package
    whose cached kernels call the firmware step (e.g. benchmarks) passes its own directory."""
    cache_dir = _PKG / "__pycache__" if cache_dir is None else Path(cache_dir)
    key = (str(cache_dir), modules)
    if key in _done:
        return False
    _done.add(key)
    stamp = cache_dir / f"firmware_kernels.{'-'.join(modules)}.digest"
    digest = _digest()
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:
        pass
    dropped = False
    for mod in modules:
        for path in cache_dir.glob(f"{mod}.*.nb[ic]"):
            try:
                path.unlink()
                dropped = True
            except OSError:
                pass
    try:
        cache_dir.mkdir(exist_ok=True)
        stamp.write_text(digest)
    except OSError:  # read-only install: numba cannot cache there either
        pass
    return dropped
