#!/usr/bin/env python3
"""PyTorch reference benchmark for the cellnets BloodMNIST models.

What it measures
----------------
For each of the study's models (mlp256, mlp4096, cnn8x3, cnn64x9, deep), and the
fast recipe's ResNet-9 at width 16 (resnet9w16, experiments/fast.yaml), this script
times full training epochs exactly the way `cellnets bench` does, so the
two programs can be compared side by side (see bench/compare.py):

* Data: DIR/bloodmnist.npz (MedMNIST layout).  The study's holdout: the first
  floor(0.7 * N) rows of the official train split train (8371 rows), the
  remaining rows (3588) validate.  Images become float32 NCHW / 255, labels
  int64, and everything lives on the device as whole tensors (no DataLoader).
* Models use Keras-equivalent initialisation: every conv/linear weight is
  Glorot (xavier) uniform, every bias zero.  resnet9w16 has PyTorch's BatchNorm
  (eps 1e-5, momentum 0.1), as cellnets gives it.
* Training: cross-entropy on logits, plain SGD (lr 0.01, no momentum, no weight
  decay; --optimizer momentum: SGD 0.01 with momentum 0.9; --optimizer adam: Adam
  0.001, eps 1e-7; both torch.optim with foreach=True), batch 32 (--batch-size), a fresh torch.randperm order each epoch.  Loss and accuracy
  are accumulated on the device and read with .item() once per epoch.
* Validation: model.eval() + torch.no_grad(), batches of 1024 over the
  validation rows, mean loss and accuracy read once at the end.  It is timed
  separately from the training epoch.
* Per model: torch.manual_seed(0), one untimed warm-up epoch (allocator and
  kernel warm-up), then N timed epochs (each followed by a timed validation
  pass).  On CUDA, torch.cuda.synchronize() runs before every timer read.

Output (stdout, whitespace separated, parsed by compare.py):

    model epoch_seconds samples_per_second val_seconds params
    mlp256 1.234 6783.4 0.052 604424

epoch_seconds and val_seconds are medians over the timed epochs and
samples_per_second = n_train / median epoch seconds.  Progress goes to stderr.

How to run
----------
    python bench/pytorch_bench.py --models cnn8x3 --epochs 1 --data-dir data
    python bench/pytorch_bench.py                      # all models, 3 epochs
    python bench/pytorch_bench.py --device cuda --threads 2

Options: --models (comma list, default the study's five), --epochs N (default 3),
--batch-size B (default 32),
--optimizer sgd|momentum|adam (default sgd),
--data-dir DIR (default $CELLNETS_DATA_DIR or "data"), --device auto|cpu|cuda
(default auto), --threads T (default: leave torch's default).

Dependencies: the standard library, torch and numpy.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS = ["mlp256", "mlp4096", "cnn8x3", "cnn64x9", "deep", "resnet9w16"]
# Timed when --models names none: the study's own models.
DEFAULT_MODELS = MODELS[:5]

# Trainable parameter counts of the cellnets models; every PyTorch model must match.
EXPECTED_PARAMS = {
    "mlp256": 604_424,
    "mlp4096": 9_670_664,
    "cnn8x3": 12_776,
    "cnn64x9": 115_976,
    "deep": 347_656,
    "resnet9w16": 412_696,
}

CLASSES = 8
VAL_BATCH = 1024
LR = 0.01
TRAIN_FRACTION = 0.7
# Keras' BatchNormalization defaults: momentum 0.99 (PyTorch counts the other way) and eps 1e-3.
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- models


def keras_init(module):
    """Glorot-uniform weights and zero biases for every conv/linear layer (Keras defaults)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def bn(channels):
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def mlp(hidden, dropout):
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(3 * 28 * 28, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, CLASSES),
    )


def cnn(filters, kernel):
    return nn.Sequential(
        nn.Conv2d(3, filters, kernel, padding=kernel // 2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(filters * 14 * 14, CLASSES),
    )


class DenseLayer(nn.Module):
    """BN -> ReLU -> 1x1 conv (128) -> BN -> ReLU -> 3x3 conv (growth), concatenated to the input."""

    def __init__(self, channels, growth=32, bottleneck=128):
        super().__init__()
        self.body = nn.Sequential(
            bn(channels),
            nn.ReLU(),
            nn.Conv2d(channels, bottleneck, 1, bias=True),
            bn(bottleneck),
            nn.ReLU(),
            nn.Conv2d(bottleneck, growth, 3, padding=1, bias=True),
        )

    def forward(self, x):
        return torch.cat([x, self.body(x)], 1)


class DenseNet(nn.Module):
    """The study's "deep" model: a small DenseNet-style network (6 dense layers, growth 32)."""

    def __init__(self, layers=6, stem=64, growth=32):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 7, padding=3, bias=True),
            bn(stem),
            nn.ReLU(),
            # ceil_mode: Keras' "same" pooling keeps the last row/column of odd sizes.
            nn.MaxPool2d(2, ceil_mode=True),
        )
        blocks = []
        channels = stem
        for _ in range(layers):
            blocks.append(DenseLayer(channels, growth))
            channels += growth
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(channels, CLASSES)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(x.mean(dim=(2, 3)))


def conv_norm(inputs, outputs):
    """A 3x3 convolution without bias, PyTorch's BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(),
    )


class ResNet9Stage(nn.Module):
    def __init__(self, inputs, outputs, pool, residual):
        super().__init__()
        self.entry = conv_norm(inputs, outputs)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.residual = (
            nn.Sequential(conv_norm(outputs, outputs), conv_norm(outputs, outputs))
            if residual else None
        )

    def forward(self, x):
        x = self.pool(self.entry(x))
        return x + self.residual(x) if self.residual is not None else x


class ResNet9(nn.Module):
    """The DAWNBench ResNet-9 as cellnets builds it (src/models/resnet9.rs): stages of
    width, 2, 4 and 8 times width channels; max-pool in the last three, a residual pair
    in the second and fourth; global max-pool, a linear head, logits times 1/8."""

    def __init__(self, width):
        super().__init__()
        layout = [(1, False, False), (2, True, True), (4, True, False), (8, True, True)]
        stages, channels = [], 3
        for multiple, pool, residual in layout:
            stages.append(ResNet9Stage(channels, width * multiple, pool, residual))
            channels = width * multiple
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(channels, CLASSES)

    def forward(self, x):
        return self.head(self.stages(x).amax(dim=(2, 3))) * 0.125


def build_model(name):
    if name == "mlp256":
        model = mlp(256, 0.0)
    elif name == "mlp4096":
        model = mlp(4096, 0.25)
    elif name == "cnn8x3":
        model = cnn(8, 3)
    elif name == "cnn64x9":
        model = cnn(64, 9)
    elif name == "deep":
        model = DenseNet()
    elif name == "resnet9w16":
        model = ResNet9(16)
    else:
        raise ValueError(f"unknown model {name!r}")
    return keras_init(model)


def trainable_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- data


def load_data(data_dir, device):
    path = os.path.join(data_dir, "bloodmnist.npz")
    if not os.path.isfile(path):
        sys.exit(f"error: {path} not found (pass --data-dir or set CELLNETS_DATA_DIR)")
    with np.load(path) as npz:
        images = npz["train_images"]
        labels = npz["train_labels"]
    rows = images.shape[0]
    n_train = int(np.floor(rows * TRAIN_FRACTION))

    def to_tensors(lo, hi):
        x = torch.from_numpy(np.ascontiguousarray(images[lo:hi]))
        x = x.permute(0, 3, 1, 2).contiguous().to(torch.float32).div_(255.0)
        y = torch.from_numpy(labels[lo:hi].reshape(-1).astype(np.int64))
        return x.to(device), y.to(device)

    train_x, train_y = to_tensors(0, n_train)
    val_x, val_y = to_tensors(n_train, rows)
    return train_x, train_y, val_x, val_y


# --------------------------------------------------------------------------- timing


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_epoch(model, opt, train_x, train_y, device, batch):
    """One full training epoch; returns (seconds, mean loss, accuracy)."""
    n = train_x.shape[0]
    sync(device)
    start = time.perf_counter()
    order = torch.randperm(n, device=device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    model.train()
    for i in range(0, n, batch):
        idx = order[i : i + batch]
        x = train_x.index_select(0, idx)
        y = train_y.index_select(0, idx)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(idx)
        correct += (logits.argmax(-1) == y).sum()
    loss_value = loss_sum.item() / n
    acc = correct.item() / n
    sync(device)
    return time.perf_counter() - start, loss_value, acc


def validate(model, val_x, val_y, device):
    """One validation pass; returns (seconds, mean loss, accuracy)."""
    n = val_x.shape[0]
    sync(device)
    start = time.perf_counter()
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.no_grad():
        for i in range(0, n, VAL_BATCH):
            x = val_x[i : i + VAL_BATCH]
            y = val_y[i : i + VAL_BATCH]
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(-1) == y).sum()
    loss_value = loss_sum.item() / n
    acc = correct.item() / n
    sync(device)
    return time.perf_counter() - start, loss_value, acc


def make_optimizer(kind, params):
    """The optimizer `cellnets bench --optimizer KIND` times, as torch.optim's foreach
    implementation (one kernel per operation over all parameters)."""
    if kind == "sgd":
        return torch.optim.SGD(params, lr=LR)
    if kind == "momentum":
        return torch.optim.SGD(params, lr=LR, momentum=0.9, foreach=True)
    return torch.optim.Adam(params, lr=0.001, eps=1e-7, foreach=True)


def bench_model(name, epochs, data, device, optimizer, batch):
    train_x, train_y, val_x, val_y = data
    torch.manual_seed(0)
    model = build_model(name).to(device)
    params = trainable_params(model)
    log(f"{name}: {params} trainable parameters")
    assert params == EXPECTED_PARAMS[name], (
        f"{name}: {params} trainable parameters, expected {EXPECTED_PARAMS[name]}"
    )
    opt = make_optimizer(optimizer, model.parameters())

    secs, loss, acc = train_epoch(model, opt, train_x, train_y, device, batch)
    vsecs, vloss, vacc = validate(model, val_x, val_y, device)
    log(
        f"{name} warm-up: {secs:.3f}s loss {loss:.4f} acc {acc:.4f} | "
        f"val {vsecs:.3f}s loss {vloss:.4f} acc {vacc:.4f}"
    )

    epoch_times, val_times = [], []
    for epoch in range(1, epochs + 1):
        secs, loss, acc = train_epoch(model, opt, train_x, train_y, device, batch)
        vsecs, vloss, vacc = validate(model, val_x, val_y, device)
        epoch_times.append(secs)
        val_times.append(vsecs)
        log(
            f"{name} epoch {epoch}/{epochs}: {secs:.3f}s loss {loss:.4f} acc {acc:.4f} | "
            f"val {vsecs:.3f}s loss {vloss:.4f} acc {vacc:.4f}"
        )

    epoch_s = statistics.median(epoch_times)
    val_s = statistics.median(val_times)
    return epoch_s, train_x.shape[0] / epoch_s, val_s, params


# --------------------------------------------------------------------------- main


def parse_models(text):
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model(s) {', '.join(unknown) or '(none)'}; choose from {','.join(MODELS)}"
        )
    return names


def pick_device(choice):
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda requested but CUDA is not available")
    return torch.device(choice)


def main():
    parser = argparse.ArgumentParser(
        description="Time full training epochs of the study's models in PyTorch."
    )
    parser.add_argument("--models", type=parse_models, default=list(DEFAULT_MODELS),
                        help=f"comma-separated subset of {','.join(MODELS)} "
                             f"(default: {','.join(DEFAULT_MODELS)})")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="training batch size (default 32, the study's)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="timed epochs per model after one warm-up epoch (default 3)")
    parser.add_argument("--data-dir", default=os.environ.get("CELLNETS_DATA_DIR", "data"),
                        help="directory holding bloodmnist.npz (default $CELLNETS_DATA_DIR or data)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's default)")
    parser.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], default="sgd",
                        help="sgd (the study's), momentum (0.9) or adam (default sgd)")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    log(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")

    data = load_data(args.data_dir, device)
    log(f"{data[0].shape[0]} training rows, {data[2].shape[0]} validation rows")

    print("model epoch_seconds samples_per_second val_seconds params", flush=True)
    for name in args.models:
        epoch_s, sps, val_s, params = bench_model(name, args.epochs, data, device, args.optimizer,
                                              args.batch_size)
        print(f"{name} {epoch_s:.3f} {sps:.1f} {val_s:.3f} {params}", flush=True)


if __name__ == "__main__":
    main()
