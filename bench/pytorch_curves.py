#!/usr/bin/env python3
"""Training curves of a study model in PyTorch, to set beside a cellnets run's epochs.csv.

It trains one of bench/pytorch_bench.py's models (same layers, Keras initialisation,
data handling and metrics) at the study's settings (plain SGD at 0.01, batch 32) and
prints one CSV row per epoch: epoch, train_loss, train_accuracy, val_loss,
val_accuracy, seconds, the columns of cellnets' epochs.csv.

--bn-scale says how BatchNorm's scale (gamma) starts: `ones` as Keras (and PyTorch)
initialise it, or `uniform` in [0, 1) as tch's BatchNormConfig default did in cellnets
before it followed Keras. Running statistics are PyTorch's (unbiased variance), which
differ from Keras' biased ones by a factor n/(n-1), n >= 3,724 values per channel here.

    python bench/pytorch_curves.py --model deep --epochs 10 --data-dir data > torch.csv
"""

import argparse
import os
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytorch_bench as reference  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=reference.MODELS, default="deep")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bn-scale", choices=["ones", "uniform"], default="ones")
    parser.add_argument("--data-dir", default=os.environ.get("CELLNETS_DATA_DIR", "data"))
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args()

    device = reference.pick_device(args.device)
    train_x, train_y, val_x, val_y = reference.load_data(args.data_dir, device)
    torch.manual_seed(args.seed)
    model = reference.build_model(args.model)
    if args.bn_scale == "uniform":
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                nn.init.uniform_(module.weight, 0.0, 1.0)
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=reference.LR)

    print("epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds", flush=True)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        _, loss, accuracy = reference.train_epoch(model, optimizer, train_x, train_y, device)
        _, val_loss, val_accuracy = reference.validate(model, val_x, val_y, device)
        seconds = time.perf_counter() - start
        print(f"{epoch},{loss:.6f},{accuracy:.6f},{val_loss:.6f},{val_accuracy:.6f},{seconds:.1f}",
              flush=True)


if __name__ == "__main__":
    main()
