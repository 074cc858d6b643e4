"""A set of bags named on a command line: folders, globs and list files, each bag once.

:func:`resolve_bags` turns what a user types (``evaluate drives/ 'runs/2024-*' @todo.txt``)
into the list of bags to run, in a stable order; :func:`bag_key` names each one's result
folder, and :func:`path_identity` is what a result's configuration hash records of a bag (or a
model) so that a changed file is run again.

What counts as a bag: a rosbag2 folder (``metadata.yaml``, or ``.mcap`` files directly in it)
or a bare ``.mcap`` file. Any other folder is searched (recursively) for bags; a glob is
expanded and each match resolved the same way; ``@FILE`` (or a ``.txt`` / ``.list`` file) is
read as one bag, folder or glob per line (``#`` starts a comment; relative paths are relative
to the list file's folder).
"""

from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

from depth_node.core.errors import ConfigError

__all__ = ['bag_key', 'is_bag', 'path_identity', 'resolve_bags']

_LIST_SUFFIXES = ('.txt', '.list')


def is_bag(path: Path) -> bool:
    """A rosbag2 folder (metadata.yaml or .mcap files in it) or an ``.mcap`` file."""
    if path.is_file():
        return path.suffix == '.mcap'
    if not path.is_dir():
        return False
    return (path / 'metadata.yaml').is_file() or any(path.glob('*.mcap'))


def _bags_under(folder: Path) -> list[Path]:
    """Bags inside a folder that is not one itself, depth first, sorted by name."""
    found: list[Path] = []
    for child in sorted(folder.iterdir()):
        if is_bag(child):
            found.append(child)
        elif child.is_dir():
            found.extend(_bags_under(child))
    return found


def _list_file(path: Path) -> list[str]:
    items = []
    for line in path.read_text(encoding='utf-8').splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            p = Path(os.path.expanduser(line))
            items.append(str(p if p.is_absolute() else path.parent / p))
    return items


def _resolve_one(item: str, source: str) -> list[Path]:
    if item.startswith('@') or (item.endswith(_LIST_SUFFIXES) and Path(item).is_file()):
        path = Path(os.path.expanduser(item.lstrip('@')))
        if not path.is_file():
            raise ConfigError(source, 'list file does not exist', str(path))
        out: list[Path] = []
        for sub in _list_file(path):
            out.extend(_resolve_one(sub, str(path)))
        return out
    expanded = os.path.expanduser(item)
    if glob.has_magic(expanded):
        matches = sorted(glob.glob(expanded))
        if not matches:
            raise ConfigError(source, 'glob matches no file or folder', item)
        out = []
        for m in matches:
            p = Path(m)
            out.extend([p] if is_bag(p) else _bags_under(p) if p.is_dir() else [])
        return out
    path = Path(expanded)
    if is_bag(path):
        return [path]
    if path.is_dir():
        inside = _bags_under(path)
        if not inside:
            raise ConfigError(source, 'folder is not a bag and holds none', item)
        return inside
    # Not there (or not a bag): kept, so that the run reports it by name with the others.
    return [path]


def resolve_bags(items: Sequence[str], source: str = 'BAG') -> list[Path]:
    """The bags named by ``items`` (see the module), absolute, each once, in the given order.

    Raises
    ------
    ConfigError
        A list file that does not exist, a glob that matches nothing, a folder without a bag,
        or no item at all (``source`` names the argument).
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for item in items:
        for path in _resolve_one(str(item), source):
            path = path.absolute()
            if path not in seen:
                seen.add(path)
                out.append(path)
    if not out:
        raise ConfigError(source, 'names no bag', list(items))
    return out


def bag_key(path: Path) -> str:
    """Name of a bag's result folder: its name and a hash of its absolute path
    (``drive_07-1a2b3c4d``), so that equal names in different folders do not collide."""
    name = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in path.name) or 'bag'
    digest = hashlib.sha1(str(path.absolute()).encode()).hexdigest()[:8]
    return f'{name}-{digest}'


def path_identity(path: str | Path) -> list[tuple[str, int, int]]:
    """(relative name, size, mtime ns) of a file, or of every file under a folder; [] when
    absent. What a configuration hash records of a bag or a model file."""
    p = Path(path)
    files: Iterable[Path]
    if p.is_file():
        files, root = [p], p.parent
    elif p.is_dir():
        files, root = sorted(f for f in p.rglob('*') if f.is_file()), p
    else:
        return []
    out = []
    for f in files:
        st = f.stat()
        out.append((str(f.relative_to(root)), int(st.st_size), int(st.st_mtime_ns)))
    return out
