"""Write calibration samples for vnmc (`--calib DIR`) from the TRAINING splits of the trained models,
and check that the committed eval data is what data.py regenerates (NumPy only, no PyTorch).

    python3 models/train/make_calib.py      (after fetch_data.sh)

models/trained/calib/charlm/tokens_{0..3}.npy    int64 [8, 128]: random windows of the training text
models/trained/calib/digits_vit/pixels_{0,1}.npy float32 [64, 1, 8, 8]: training images
Each .npy file is one calibration sample (a batch) of the model's single input.
"""
import os
import sys

import numpy as np

from data import encode, load_digits, split_corpus, stratified_split, windows

HERE = os.path.dirname(os.path.abspath(__file__))
TRAINED = os.path.join(HERE, "..", "trained")


def main():
    ok = True
    text = open(os.path.join(HERE, "data", "corpus.txt"), encoding="utf-8").read()
    tr, _va, te = split_corpus(text)
    tr_ids, te_ids = encode(tr), encode(te)
    ev_path = os.path.join(TRAINED, "charlm.eval.npy")
    if os.path.exists(ev_path):
        ev = np.load(ev_path)
        same = np.array_equal(ev.astype(np.int64), windows(te_ids, 128, len(ev)))
        print(f"charlm.eval.npy {ev.shape} {ev.dtype}: {'matches' if same else 'DIFFERS FROM'} the regenerated test windows")
        ok &= same
    rng = np.random.default_rng(7)
    starts = rng.integers(0, len(tr_ids) - 128, size=32)
    tokens = tr_ids[starts[:, None] + np.arange(128)]
    out = os.path.join(TRAINED, "calib", "charlm")
    os.makedirs(out, exist_ok=True)
    for i in range(4):
        np.save(os.path.join(out, f"tokens_{i}.npy"), np.ascontiguousarray(tokens[8 * i:8 * i + 8]))

    X, y = load_digits(os.path.join(HERE, "data", "digits.csv.gz"))
    train, test = stratified_split(y)
    img_path = os.path.join(TRAINED, "digits.eval.images.npy")
    if os.path.exists(img_path):
        same = np.array_equal(np.load(img_path), X[test]) and np.array_equal(
            np.load(os.path.join(TRAINED, "digits.eval.labels.npy")), y[test])
        print(f"digits.eval.*.npy: {'match' if same else 'DIFFER FROM'} the regenerated test split")
        ok &= same
    pick = np.random.default_rng(7).permutation(train)[:128]
    out = os.path.join(TRAINED, "calib", "digits_vit")
    os.makedirs(out, exist_ok=True)
    for i in range(2):
        np.save(os.path.join(out, f"pixels_{i}.npy"), np.ascontiguousarray(X[pick[64 * i:64 * i + 64]]))
    print("wrote", os.path.relpath(os.path.join(TRAINED, "calib")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
