"""What open pages of `cellnets serve` cost a study that trains. The study has a
finished stage of 300 small runs (trained once, first) and a stage of one CNN run,
which is trained three ways, in turn: with nothing watching; with PAGES pages of the
served page open in headless Chromium on that stage (each polling every two seconds and
redrawing its curves and table as epochs land); and with PAGES clients that only fetch
api/study every two seconds (the server's share alone, as when the browsers run on
other machines). It prints the mean epoch time of each and the CPU time the server used
meanwhile.

    python3 bench/serve_load.py CELLNETS_BINARY [PAGES] [EPOCHS]

It needs numpy (for the data) and chromium. Run it on an idle machine: the difference
it looks for is small.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "tools"))
from browser import Browser  # noqa: E402

STUDY = """dataset: {{name: toy}}
defaults: {{seed: 1}}
stages:
  - name: sweep
    model: {{kind: mlp, hidden: 8}}
    training: {{epochs: 2}}
    grid: {{hidden: {hidden}, learning_rate: {rates}}}
  - name: load
    model: {{kind: cnn, kernels: 32, kernel_size: 3}}
    training: {{epochs: {epochs}}}
"""


def toy_data(folder):
    """A learnable 4-class set of 8x8 RGB images, as the tests write it."""
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {}
    for split, rows in [("train", 3000), ("val", 300), ("test", 300)]:
        labels = np.arange(rows) % 4
        images = rng.uniform(0, 100, (rows, 8, 8, 3))
        for label in range(4):
            top, left = (label // 2) * 4, (label % 2) * 4
            images[labels == label, top:top + 4, left:left + 4] += 150
        arrays[f"{split}_images"] = images.clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.reshape(rows, 1).astype(np.uint8)
    os.makedirs(os.path.join(folder, "data"))
    np.savez(os.path.join(folder, "data", "toy.npz"), **arrays)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_study(binary, folder, epochs):
    """The manifest, and its 300-run stage trained."""
    hidden = [4 + 2 * i for i in range(20)]
    rates = [round(0.002 * (i + 1), 3) for i in range(15)]
    with open(os.path.join(folder, "experiments.yaml"), "w") as manifest:
        manifest.write(STUDY.format(hidden=hidden, rates=rates, epochs=epochs))
    subprocess.run([binary, "only", "sweep", "--device", "cpu", "--jobs", "2"], cwd=folder,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def poll_until(url, stop):
    # The printed URL is http://host:port/?token=...: a script passes the token itself.
    base, token = url.split("?token=")
    while not stop.wait(2):
        urllib.request.urlopen(f"{base}api/study?token={token}").read()


def train(binary, folder, watchers, count):
    out = os.path.join(folder, "out")
    subprocess.run(["rm", "-rf", os.path.join(out, "load")], check=True)
    server = subprocess.Popen([binary, "serve", "--port", "0"], cwd=folder,
                              stdout=subprocess.PIPE, text=True)
    url = next(word for word in server.stdout.readline().split() if word.startswith("http"))
    browser, stop, pollers = None, threading.Event(), []
    if watchers == "pages":
        browser = Browser("chromium", tempfile.mkdtemp())
        for _ in range(count):
            browser.send("Target.createTarget", {"url": url + "#stage=load"})
    if watchers == "pollers":
        pollers = [threading.Thread(target=poll_until, args=(url, stop)) for _ in range(count)]
        for poller in pollers:
            poller.start()
    if watchers != "none":
        # Loaded and polling before training starts.
        time.sleep(5)
    server_cpu = cpu_seconds(server.pid)
    started = time.time()
    subprocess.run([binary, "only", "load", "--device", "cpu", "--threads", "1"], cwd=folder,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - started
    server_cpu = cpu_seconds(server.pid) - server_cpu
    if browser:
        browser.close()
    stop.set()
    for poller in pollers:
        poller.join()
    server.kill()
    server.wait()
    rows = open(os.path.join(out, "load", "run", "epochs.csv")).read().splitlines()[1:]
    seconds = [float(row.split(",")[7]) for row in rows]
    return {"watchers": watchers, "count": count, "epochs": len(seconds),
            "mean_epoch_s": round(sum(seconds) / len(seconds), 3),
            "training_wall_s": round(wall, 1), "serve_cpu_s": round(server_cpu, 2),
            "serve_cpu_share": round(server_cpu / wall, 4)}


def main():
    binary = os.path.abspath(sys.argv[1])
    pages = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    with tempfile.TemporaryDirectory() as folder:
        toy_data(folder)
        write_study(binary, folder, epochs)
        # Alternated, so a change of the machine's load falls on both.
        for watchers in ["none", "pages", "pollers"] * 2:
            count = 0 if watchers == "none" else pages
            print(json.dumps(train(binary, folder, watchers, count)), flush=True)


if __name__ == "__main__":
    main()
