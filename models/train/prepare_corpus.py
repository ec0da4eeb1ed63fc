"""Turn fortune-mod data files into one plain-text corpus.

Usage: prepare_corpus.py FORTUNE_DIR OUT.txt

Reads every fortune file (not the .dat indexes, not the .u8 links, not `ascii-art`), drops
terminal overstriking (`X\\b`), keeps one fortune per record and writes them, sorted by file name
then file order, each followed by a line holding `%` (the fortune file format). Stdlib only.
"""
import os
import re
import sys

SKIP = {"ascii-art"}


def fortunes(path):
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", errors="replace")
    text = re.sub(r".\x08", "", text, flags=re.S).replace("\r", "")
    for rec in re.split(r"^%\n", text, flags=re.M):
        rec = rec.strip("\n")
        if rec.strip():
            yield rec + "\n"


def main(src, out):
    names = sorted(n for n in os.listdir(src)
                   if not n.endswith((".dat", ".u8")) and n not in SKIP
                   and os.path.isfile(os.path.join(src, n)) and not os.path.islink(os.path.join(src, n)))
    count = 0
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for n in names:
            for rec in fortunes(os.path.join(src, n)):
                f.write(rec + "%\n")
                count += 1
    print(f"{out}: {count} fortunes from {len(names)} files", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
