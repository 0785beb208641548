#!/usr/bin/env python3
"""Which tables the frames of a SQLite WAL belong to: what a node's commits write.

Usage: bench/wal_pages.py DIR   (DIR holds converge.db and converge.db-wal, copied together
from a running node's data folder, e.g. `cp data/converge.db-wal data/converge.db DIR/`).

Reads the WAL's frames of its current generation (their salts match the header's), counts
commit frames, and maps each frame's page number to its table or index with SQLite's `dbstat`
(on the copy: an approximate map while the node checkpoints, good enough for shares). Prints
frames per commit by table and by page type (leaf / internal). Standard library only.
"""
import collections
import os
import sqlite3
import struct
import sys


def main(d: str) -> None:
    wal = open(os.path.join(d, 'converge.db-wal'), 'rb').read()
    _magic, _ver, psz, _ckseq, s1, s2 = struct.unpack('>IIIIII', wal[:24])
    frames, commits, off = [], 0, 32
    while off + 24 + psz <= len(wal):
        pg, csize, fs1, fs2 = struct.unpack('>IIII', wal[off:off + 16])
        if (fs1, fs2) != (s1, s2):
            break
        frames.append(pg)
        commits += 1 if csize else 0
        off += 24 + psz
    db = sqlite3.connect(f'file:{os.path.join(d, "converge.db")}?mode=ro', uri=True)
    page = {p: (n, t) for n, p, t in db.execute('SELECT name, pageno, pagetype FROM dbstat')}
    by_table, by_kind = collections.Counter(), collections.Counter()
    for pg in frames:
        n, t = page.get(pg, ('?', '?'))
        by_table[n] += 1
        by_kind[(n, t)] += 1
    per = max(1, commits)
    print(f'page size {psz}, frames {len(frames)}, commits {commits}, '
          f'frames per commit {len(frames) / per:.1f}')
    for n, k in by_table.most_common(12):
        print(f'{n:32s} {k:8d} {k / per:8.1f} per commit')
    print('by page type:')
    for (n, t), k in by_kind.most_common(12):
        print(f'{n:32s} {str(t):10s} {k / per:8.1f} per commit')


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
