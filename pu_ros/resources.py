"""Find the package's shared files (config/, models/, launch/) in a source checkout or an installed prefix."""

from __future__ import annotations

import os
from pathlib import Path
import sys

PACKAGE = 'pu_ros'
_SOURCE_ROOT = Path(__file__).resolve().parents[1]


def share_dirs() -> list[Path]:
    """Candidate share directories, most specific first."""
    dirs = []
    if (_SOURCE_ROOT / 'package.xml').is_file():
        dirs.append(_SOURCE_ROOT)  # running from a source checkout or an editable install
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / 'share' / PACKAGE)
    dirs.append(Path(sys.prefix) / 'share' / PACKAGE)
    return dirs


def find(relative: str) -> Path:
    """Absolute path of ``relative`` (e.g. ``'config/semantic_kitti.yaml'``) in the first share dir that has it."""
    for base in share_dirs():
        path = base / relative
        if path.exists():
            return path
    searched = ', '.join(str(d) for d in share_dirs())
    raise FileNotFoundError(f'{relative} not found in any pu_ros share directory (searched: {searched})')


def config_path(name: str) -> Path:
    """Path of a file in config/."""
    return find(f'config/{name}')


def model_path(name: str) -> Path:
    """Path of a file in models/."""
    return find(f'models/{name}')
