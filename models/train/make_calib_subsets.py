"""Write extra calibration sets for the trained models, drawn from the TRAINING splits with other seeds,
to measure how much a pruning setting's result depends on which calibration samples it sees
(docs/quality.md, "Calibration draws").

    python3 models/train/make_calib_subsets.py OUTDIR [--model digits|charlm] [--seeds 1-20]   (after fetch_data.sh)

digits: OUTDIR/seed<k>/pixels_{0,1}.npy, float32 [64, 1, 8, 8] each: 128 training images, drawn as
make_calib.py draws models/trained/calib/digits_vit (which is seed 7's draw).
charlm: OUTDIR/seed<k>/tokens_{0..3}.npy, int64 [8, 128] each: 32 random windows of the training text,
as make_calib.py draws models/trained/calib/charlm (seed 7's draw).
Never touches the test splits (the eval data). Not committed (32 KB per seed); regenerate with this script.
"""
import argparse
import os
import sys

import numpy as np

from data import encode, load_digits, split_corpus, stratified_split

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--model", choices=["digits", "charlm"], default="digits")
    ap.add_argument("--seeds", default="1-20", help="a range a-b or a comma list")
    a = ap.parse_args()
    seeds = range(int(a.seeds.split("-")[0]), int(a.seeds.split("-")[1]) + 1) if "-" in a.seeds else [int(s) for s in a.seeds.split(",")]
    if a.model == "charlm":
        text = open(os.path.join(HERE, "data", "corpus.txt"), encoding="utf-8").read()
        tr_ids = encode(split_corpus(text)[0])
        for k in seeds:
            starts = np.random.default_rng(k).integers(0, len(tr_ids) - 128, size=32)
            tokens = tr_ids[starts[:, None] + np.arange(128)]
            d = os.path.join(a.out, f"seed{k}")
            os.makedirs(d, exist_ok=True)
            for i in range(4):
                np.save(os.path.join(d, f"tokens_{i}.npy"), np.ascontiguousarray(tokens[8 * i:8 * i + 8]))
        print(f"wrote {len(seeds)} calibration sets of 32 training windows to {a.out}")
        return 0
    X, y = load_digits(os.path.join(HERE, "data", "digits.csv.gz"))
    train, test = stratified_split(y)
    assert not set(train) & set(test)
    for k in seeds:
        pick = np.random.default_rng(k).permutation(train)[:128]
        d = os.path.join(a.out, f"seed{k}")
        os.makedirs(d, exist_ok=True)
        for i in range(2):
            np.save(os.path.join(d, f"pixels_{i}.npy"), np.ascontiguousarray(X[pick[64 * i:64 * i + 64]]))
    print(f"wrote {len(seeds)} calibration sets of 128 training images to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
