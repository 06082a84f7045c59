#!/usr/bin/env python3
"""What the conv step of the fast recipe's net could gain on a CPU, measured in PyTorch
eager on the same libtorch cellnets links, before any of it is built into cellnets.

Three questions, each answered by interleaved A/B timings (A, B, A, B, ... so that a
drift of the machine's load falls on both alike), on ResNet-9 at width 16
(bench/pytorch_bench.py's resnet9w16, the net of experiments/fast.yaml) and 28x28
BloodMNIST-shaped random input:

1. Training step (forward, backward, SGD with Nesterov momentum) at batch 128:
   contiguous NCHW against channels-last (NHWC) input and weights.
2. Evaluation pass over 3,421 images (the official val split's size): BatchNorm as
   its own operation against BatchNorm folded into the convolution before it.
3. Evaluation batch size: 256, 1024 (cellnets' EVAL_BATCH) and 3421 (one batch).

Prints one line per comparison: the median seconds of each side and B / A.

    python bench/conv_layout.py [--threads 1] [--repeats 7]

Dependencies: torch (the interpreter scripts/setup-libtorch.sh installs has it).
"""

import argparse
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from pytorch_bench import ResNet9  # noqa: E402

VAL_IMAGES = 3421


def fold(model):
    """A copy of `model` with each Conv2d -> BatchNorm2d pair fused (eval only)."""
    model = torch.fx.symbolic_trace(model.eval())
    modules = dict(model.named_modules())
    for node in model.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        previous = node.args[0]
        if previous.op != "call_module" or not isinstance(modules[previous.target], nn.Conv2d):
            continue
        conv, norm = modules[previous.target], modules[node.target]
        fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, norm)
        parent, _, name = previous.target.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, name, fused)
        node.replace_all_uses_with(previous)
        model.graph.erase_node(node)
    model.recompile()
    return model


def train_time(model, images, labels, optimizer, steps=20):
    start = time.perf_counter()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


@torch.no_grad()
def eval_time(model, images, batch):
    start = time.perf_counter()
    for first in range(0, images.shape[0], batch):
        model(images[first:first + batch])
    return time.perf_counter() - start


def compare(title, a, b, repeats):
    a(), b()  # warm-up: allocator, oneDNN primitive caches
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(a())
        times_b.append(b())
    median_a, median_b = statistics.median(times_a), statistics.median(times_b)
    print(f"{title}: {median_a:.4f} s vs {median_b:.4f} s, ratio {median_b / median_a:.3f}",
          flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)", flush=True)

    images = torch.rand(128, 3, 28, 28)
    labels = torch.randint(0, 8, (128,))
    contiguous = ResNet9(16)
    channels_last = ResNet9(16).to(memory_format=torch.channels_last)
    channels_last.load_state_dict(contiguous.state_dict())
    images_last = images.contiguous(memory_format=torch.channels_last)

    def sgd(model):
        return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)

    optimizers = sgd(contiguous), sgd(channels_last)
    compare(
        "train step, batch 128: NCHW vs channels-last",
        lambda: train_time(contiguous.train(), images, labels, optimizers[0]),
        lambda: train_time(channels_last.train(), images_last, labels, optimizers[1]),
        args.repeats,
    )

    val = torch.rand(VAL_IMAGES, 3, 28, 28)
    unfolded = contiguous.eval()
    folded = fold(contiguous)
    with torch.no_grad():
        difference = (folded(val[:256]) - unfolded(val[:256])).abs().max().item()
    print(f"folded logits differ by at most {difference:.2e}", flush=True)
    compare(
        "eval pass, batch 1024: BatchNorm vs folded",
        lambda: eval_time(unfolded, val, 1024),
        lambda: eval_time(folded, val, 1024),
        args.repeats,
    )
    compare(
        "eval pass, folded: NCHW vs channels-last",
        lambda: eval_time(folded, val, 1024),
        lambda: eval_time(fold(channels_last), val.contiguous(memory_format=torch.channels_last), 1024),
        args.repeats,
    )
    for batch in (256, VAL_IMAGES):
        compare(
            f"eval pass, folded: batch 1024 vs {batch}",
            lambda: eval_time(folded, val, 1024),
            lambda batch=batch: eval_time(folded, val, batch),
            args.repeats,
        )


if __name__ == "__main__":
    main()
