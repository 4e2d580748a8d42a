"""Splits of SemanticKITTI-layout dataset roots: which labelled frames of which sequences a run uses.

A dataset root holds ``ROOT/sequences/XX/`` folders; several roots may be combined (e.g. real scans and synthetic
sequences) and a split is looked up in every root::

    train: ['00', '01']                        # every labelled frame of these sequences
    train: {'00': ['000000', '000001'], '90': all}
    val:   {'00': ['000002']}
    val:   '00/000002,00/000003'               # the --frames form

Only frames with a ``.label`` file (and their scan) are used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class SplitError(ValueError):
    """A split names sequences or frames that cannot be found, or is malformed."""


def parse_split(spec) -> dict[str, list[str] | None]:
    """Normalise a split description.

    Args:
        spec: a list of sequence names, a mapping ``seq -> list of frame ids | 'all' | None``, or a string
            ``'00'`` / ``'00/000002,00/000003'`` / ``'00,01'``. Frame ids may be ints (zero-padded to 6 digits).

    Returns:
        dict ``seq -> sorted list of frame ids`` (``None`` = every labelled frame), sequence names zero-padded to 2.
    """
    if spec is None:
        raise SplitError('split is empty (None)')
    out: dict[str, list[str] | None] = {}

    def add(seq, frames):
        seq = _seq_name(seq)
        if frames is None or (isinstance(frames, str) and frames.lower() == 'all'):
            out[seq] = None
            return
        if isinstance(frames, (str, int)):
            frames = [frames]
        ids = [_frame_name(f) for f in frames]
        if out.get(seq, []) is None:
            return
        out[seq] = sorted(set(out.get(seq, [])) | set(ids))

    if isinstance(spec, str):
        for part in (p.strip() for p in spec.split(',')):
            if not part:
                continue
            seq, sep, frame = part.partition('/')
            add(seq, frame if sep else None)
    elif isinstance(spec, Mapping):
        for seq, frames in spec.items():
            add(seq, frames)
    elif isinstance(spec, Iterable):
        for item in spec:
            if isinstance(item, str) and '/' in item:
                seq, _, frame = item.partition('/')
                add(seq, frame)
            else:
                add(item, None)
    else:
        raise SplitError(f'cannot read split {spec!r}: expected a list, a mapping or a string')
    if not out:
        raise SplitError(f'split {spec!r} names no sequence')
    return out


def _seq_name(seq) -> str:
    s = str(seq).strip()
    if not s.isdigit():
        raise SplitError(f'sequence name {seq!r} must be a number such as "00"')
    return s.zfill(2)


def _frame_name(frame) -> str:
    s = str(frame).strip()
    if not s.isdigit():
        raise SplitError(f'frame id {frame!r} must be a number such as "000002"')
    return s.zfill(6)


@dataclass(frozen=True)
class FrameRef:
    """One labelled frame of one sequence of one root."""

    root: str
    sequence: str
    frame_id: str

    @property
    def name(self) -> str:
        """``'SEQ/FRAME'`` (e.g. ``'00/000002'``)."""
        return f'{self.sequence}/{self.frame_id}'

    @property
    def folder(self) -> Path:
        """The sequence folder."""
        return Path(self.root) / 'sequences' / self.sequence


def index_frames(roots: Sequence[str | Path] | str | Path, split) -> list[FrameRef]:
    """Labelled frames of a split over one or several dataset roots.

    Args:
        roots: dataset root(s), each holding ``sequences/XX/``; a path to a ``sequences/XX`` folder itself is
            accepted as a root holding that one sequence.
        split: see :func:`parse_split`.

    Returns:
        Frames in (root, sequence, frame) order.

    Raises:
        SplitError: a sequence found in no root, an explicitly listed frame without scan or labels, or nothing
            found at all.
    """
    if isinstance(roots, (str, Path)):
        roots = [roots]
    wanted = parse_split(split)
    refs: list[FrameRef] = []
    found_seq = set()
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise SplitError(f'dataset root {root} does not exist')
        seq_dirs = _sequence_dirs(root)
        for seq, frames in wanted.items():
            if seq not in seq_dirs:
                continue
            found_seq.add(seq)
            base, folder = seq_dirs[seq]
            labelled = sorted(
                p.stem for p in (folder / 'labels').glob('*.label') if (folder / 'velodyne' / f'{p.stem}.bin').is_file()
            )
            if frames is None:
                chosen = labelled
            else:
                have = set(labelled)
                missing = [f for f in frames if f not in have]
                if missing:
                    raise SplitError(
                        f'{folder}: frame(s) {", ".join(missing[:5])} have no scan+label pair '
                        f'(labelled frames: {", ".join(labelled[:5])}{" ..." if len(labelled) > 5 else ""})'
                    )
                chosen = frames
            refs += [FrameRef(str(base), seq, f) for f in chosen]
    missing_seq = sorted(set(wanted) - found_seq)
    if missing_seq:
        raise SplitError(f'sequence(s) {", ".join(missing_seq)} not found under {", ".join(map(str, roots))}')
    if not refs:
        raise SplitError(f'split {split!r} selects no labelled frame under {", ".join(map(str, roots))}')
    return refs


def _sequence_dirs(root: Path) -> dict[str, tuple[Path, Path]]:
    """Map sequence name -> (root to record, sequence folder)."""
    if (root / 'velodyne').is_dir() and root.parent.name == 'sequences':
        return {root.name: (root.parent.parent, root)}
    seqs = root / 'sequences'
    if not seqs.is_dir():
        raise SplitError(f'{root} has no sequences/ folder (SemanticKITTI layout: ROOT/sequences/XX/velodyne)')
    return {p.name: (root, p) for p in sorted(seqs.iterdir()) if p.is_dir() and p.name.isdigit()}
