#!/usr/bin/env python3
"""Folded stacks from `perf script`, and the tables bench/profile prints from them.

    perf script -i perf.data | python3 bench/fold.py > NAME.folded
    python3 bench/fold.py --table NAME.folded [--top 12] [--match REGEX]

A folded line is `thread;outermost;...;innermost COUNT` (the format flame-graph tools read).
--table prints, in Markdown, each thread's share of the samples and, per thread, the frames
with the most samples in their stacks (inclusive; not the thread's roots, found in every
stack), those matching REGEX when it is given.
Standard library only.
"""
import argparse
import collections
import re
import sys


def frames_of(line):
    """One frame of `perf script`'s call chains: the symbol, without offset, DSO or hash."""
    parts = line.strip().split(None, 1)
    if len(parts) < 2:
        return None
    sym = re.sub(r"\s+\([^()]*\)$", "", parts[1])
    sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
    return re.sub(r"::h[0-9a-f]{16}$", "", sym).replace(";", ":")


def fold(lines):
    counts = collections.Counter()
    thread, frames = None, []
    for line in list(lines) + [""]:
        line = line.rstrip("\n")
        if not line.strip():
            if thread is not None:
                counts[";".join([thread] + frames[::-1])] += 1
            thread, frames = None, []
        elif not line.startswith((" ", "\t")):
            thread, frames = line.split()[0], []
        else:
            frame = frames_of(line)
            if frame:
                frames.append(frame)
    return counts


def short(frame, width=110):
    """Generic arguments cut to their first 40 characters; the frame to `width`."""
    frame = re.sub(r"<([^<>]{40})[^<>]*>", r"<\1…>", frame)
    return frame if len(frame) <= width else frame[: width - 1] + "…"


def table(path, top, match):
    stacks = []
    with open(path) as f:
        for line in f:
            stack, n = line.rsplit(" ", 1)
            stacks.append((stack.split(";"), int(n)))
    total = sum(n for _, n in stacks)
    by_thread = collections.Counter()
    for frames, n in stacks:
        by_thread[frames[0]] += n
    print(f"{total} samples.\n\n| thread | share of the process's samples |\n|---|---:|")
    for thread, n in by_thread.most_common():
        print(f"| {thread} | {100 * n / total:.1f} % |")
    pattern = re.compile(match) if match else None
    for thread, thread_n in by_thread.most_common():
        if thread_n < total / 100:
            continue
        inclusive = collections.Counter()
        for frames, n in stacks:
            if frames[0] == thread:
                for frame in set(frames[1:]):
                    inclusive[frame] += n
        # Frames in (nearly) every stack of the thread are its roots: they say nothing.
        rows = [(f, n) for f, n in inclusive.most_common()
                if n < 0.98 * thread_n and (not pattern or pattern.search(f))][:top]
        print(f"\n{thread}: frames by samples in their stacks (% of the process)\n\n| % | frame |\n|---:|---|")
        for frame, n in rows:
            print(f"| {100 * n / total:.1f} | `{short(frame)}` |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", metavar="FOLDED", help="print the tables of a folded file")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--match", help="only frames matching this regular expression")
    a = ap.parse_args()
    if a.table:
        table(a.table, a.top, a.match)
        return
    for stack, n in sorted(fold(sys.stdin).items(), key=lambda kv: -kv[1]):
        print(f"{stack} {n}")


if __name__ == "__main__":
    main()
