"""Text output of ``pu-ros echo`` / ``echo_node``: one line per message record and a per-topic summary table."""

from __future__ import annotations

from collections import Counter, defaultdict


def format_summary(records: list[dict]) -> str:
    """A per-topic table of the records: message count, stamps, rate and content."""
    by_topic = defaultdict(list)
    for rec in records:
        by_topic[rec['topic']].append(rec)
    rows = [('topic', 'type', 'msgs', 'first stamp [s]', 'rate [Hz]', 'content')]
    for topic in sorted(by_topic):
        recs = by_topic[topic]
        stamps = [r['stamp_ns'] for r in recs if r.get('stamp_ns') is not None]
        first = f'{min(stamps) / 1e9:.3f}' if stamps else '-'
        span = (max(stamps) - min(stamps)) / 1e9 if len(stamps) > 1 else 0.0
        rate = f'{(len(stamps) - 1) / span:.2f}' if span > 0 else '-'
        rows.append((topic, recs[0]['type'].split('/')[-1], str(len(recs)), first, rate, _content(recs)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ['  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def _content(recs: list[dict]) -> str:
    errors = sum('error' in r for r in recs)
    kind = recs[0]['type']
    text = ''
    if kind.endswith('/PointCloud2'):
        pts = [r['points'] for r in recs if 'points' in r]
        labelled = sum(r.get('labels_sha1') is not None for r in recs)
        text = f'{min(pts)}-{max(pts)} points, labels in {labelled}/{len(recs)}' if pts else ''
    elif kind.endswith('/Image'):
        shapes = Counter(f'{r["width"]}x{r["height"]} {r["encoding"]}' for r in recs if 'encoding' in r)
        text = ', '.join(shapes)
    elif kind.endswith('/CameraInfo'):
        shapes = Counter(f'{r["width"]}x{r["height"]} fx={r["k"][0]:.1f}' for r in recs if 'k' in r)
        text = ', '.join(shapes)
    return text + (f' ({errors} not convertible)' if errors else '')


def message_line(rec: dict) -> str:
    """One line describing a record, as ``pu-ros echo`` prints it."""
    stamp = '-' if rec.get('stamp_ns') is None else f'{rec["stamp_ns"] / 1e9:.6f}'
    head = f'{rec["topic"]} #{rec.get("index", 0)} stamp {stamp}'
    if 'error' in rec:
        return f'{head} ERROR {rec["error"]}'
    if 'points_sha1' in rec:
        labels = f' labels {rec["labels_sha1"][:10]}' if rec['labels_sha1'] else ''
        return f'{head} {rec["points"]} points sha1 {rec["points_sha1"][:10]}{labels}'
    if 'image_sha1' in rec:
        return f'{head} {rec["width"]}x{rec["height"]} {rec["encoding"]} sha1 {rec["image_sha1"][:10]}'
    if 'k' in rec:
        return f'{head} {rec["width"]}x{rec["height"]} fx {rec["k"][0]:.2f} fy {rec["k"][4]:.2f}'
    if 'transforms' in rec:
        return f'{head} ' + ', '.join(f'{t[0]} -> {t[1]}' for t in rec['transforms'])
    return f'{head} {rec["type"]}'
