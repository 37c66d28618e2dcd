"""The PyTorch baseline that jaxpcam replaces, measured on this machine for side-by-side ratios.

Not a jaxpcam dependency: run it in an environment with torch (``pip install torch``).

    python benchmarks/torch_reference.py --batch-sizes 128,512            # MLP train step + no_grad
    python benchmarks/torch_reference.py --pipeline --data-dir DIR         # the seeds' full pipeline
    python benchmarks/torch_reference.py --resident --data-dir DIR --device cuda   # data already on the GPU

The model is the course MLP (27648 -> 512 -> 256 -> 1, ReLU, dropout 0.2) with Adam and
BCEWithLogitsLoss; ``--model cnn`` is the seeds' 3-conv CNN. ``--pipeline`` trains end to end the
way the seeds did: an h5py Dataset reading one index per __getitem__, WeightedRandomSampler, two
DataLoader workers, random flips, ``(x / 255 - 0.5) / 0.5`` on the host (the model on ``--device``).
``--resident`` is the strongest plain PyTorch loop we could write for the same job: train and valid
as uint8 tensors on the device, the balanced draw, gather, flips/transposes and normalisation all
on the device, fused Adam on CUDA; it times whole epochs plus a pass over valid.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    """The flags; defined before torch is imported, so --help works without it."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mlp", choices=("mlp", "cnn"))
    p.add_argument("--batch_sizes", "--batch-sizes", default="128,512")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--pipeline", action="store_true", help="also train end to end from --data-dir")
    p.add_argument("--pipeline_steps", "--pipeline-steps", type=int, default=40)
    p.add_argument("--eval_passes", "--eval-passes", type=int, default=3, help="timed passes over valid in --pipeline")
    p.add_argument("--resident", action="store_true", help="also the data-on-device loop over --data-dir")
    p.add_argument("--resident_batch", "--resident-batch", type=int, default=512)
    p.add_argument(
        "--resident_epochs", "--resident-epochs", type=int, default=3, help="timed epochs after one warm-up epoch"
    )
    p.add_argument("--data_dir", "--data-dir", default=None)
    p.add_argument("--device", default="cpu", help="cpu, or cuda (eager, float32) for the compute benchmark")
    p.add_argument("--json", type=Path, default=None)
    return p


try:
    import torch
    from torch import nn
except ImportError:
    if __name__ == "__main__" and {"-h", "--help"} & set(sys.argv[1:]):
        _parser().print_help()
        sys.exit(0)
    sys.exit("torch_reference.py needs PyTorch: pip install torch (it is not a jaxpcam dependency)")


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(27648, 512), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 1),
    )  # fmt: skip


def cnn() -> nn.Module:
    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(
        block(3, 32), block(32, 64), block(64, 128), nn.Flatten(), nn.Linear(128 * 12 * 12, 128), nn.ReLU(),
        nn.Dropout(0.2), nn.Linear(128, 1),
    )  # fmt: skip


def _sync(device: str) -> None:
    """CUDA launches are asynchronous: the clock may stop only after the GPU has finished."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _windows(step, steps: int, windows: int, batch_size: int, device: str = "cpu") -> dict:
    rates = []
    for _ in range(windows):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        rates.append(steps * batch_size / (time.perf_counter() - t0))
    rates.sort()
    return {"images_per_second": statistics.median(rates), "min": rates[0], "max": rates[-1]}


def bench_compute(model_name: str, batch_size: int, args) -> list[dict]:
    torch.manual_seed(0)
    model = (mlp() if model_name == "mlp" else cnn()).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    x = (torch.rand(batch_size, 3, 96, 96) * 2 - 1).to(args.device)
    y = torch.randint(0, 2, (batch_size, 1)).float().to(args.device)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

    def forward():
        with torch.no_grad():
            model(x)

    out = []
    for mode, step in (("train", train_step), ("forward", forward)):
        model.train(mode == "train")
        for _ in range(args.warmup):
            step()
        r = _windows(step, args.steps, args.windows, batch_size, args.device)
        out.append({"model": model_name, "mode": mode, "batch_size": batch_size, "device": args.device, **r})
        print(f"torch {model_name} {mode:7} batch {batch_size:4}: {r['images_per_second']:8.1f} img/s", flush=True)
    return out


class H5Dataset(torch.utils.data.Dataset):
    """The seeds' dataset: one h5py read per index, the handle opened lazily per worker."""

    def __init__(self, x_path, y_path):
        import h5py

        self.x_path = x_path
        with h5py.File(y_path, "r") as f:
            self.labels = f["y"][...].reshape(-1).astype("int64")
        self.x = None
        self.flip = True

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        import h5py

        if self.x is None:
            self.x = h5py.File(self.x_path, "r")["x"]
        image = torch.from_numpy(self.x[i].astype("float32")).permute(2, 0, 1) / 255.0
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(2)
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(1)
        return (image - 0.5) / 0.5, torch.tensor([float(self.labels[i])])


def bench_pipeline(args) -> dict:
    data_dir = Path(args.data_dir)
    stem = data_dir / "camelyonpatch_level_2_split_train"
    dataset = H5Dataset(f"{stem}_x.h5", f"{stem}_y.h5")
    counts = torch.bincount(torch.from_numpy(dataset.labels))
    weights = (1.0 / counts.float())[torch.from_numpy(dataset.labels)]
    sampler = torch.utils.data.WeightedRandomSampler(weights, len(weights), replacement=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=128, sampler=sampler, num_workers=2)
    torch.manual_seed(0)
    model = mlp().to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    images, t0 = 0, None
    for i, (x, y) in enumerate(loader):
        if i == 3:
            _sync(args.device)
            t0, images = time.perf_counter(), 0
        x, y = x.to(args.device), y.to(args.device)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
        images += len(x)
        if i == 3 + args.pipeline_steps:
            break
    _sync(args.device)
    rate = images / (time.perf_counter() - t0)
    print(f"torch seeds' pipeline (h5py per index, WeightedRandomSampler, 2 workers): {rate:.0f} img/s")
    stem = data_dir / "camelyonpatch_level_2_split_valid"
    valid = H5Dataset(f"{stem}_x.h5", f"{stem}_y.h5")
    valid.flip = False
    model.eval()
    loader = torch.utils.data.DataLoader(valid, batch_size=512, num_workers=2, persistent_workers=True)
    rates = []
    with torch.no_grad():
        for _ in range(1 + args.eval_passes):  # the first pass starts the workers: untimed, as ours warms up
            t0 = time.perf_counter()
            for x, _ in loader:
                model(x.to(args.device))
            _sync(args.device)
            rates.append(len(valid) / (time.perf_counter() - t0))
    eval_rate = statistics.median(rates[1:])
    print(f"torch seeds' evaluation over valid (no_grad, DataLoader 2 workers, batch 512): {eval_rate:.0f} img/s "
          f"(median of {args.eval_passes} passes after a first that started the workers: {rates[0]:.0f})")  # fmt: skip
    return [
        {"mode": "pipeline_train", "batch_size": 128, "images_per_second": rate},
        {"mode": "pipeline_eval", "batch_size": 512, "images_per_second": eval_rate},
    ]


def _load_to_device(data_dir: Path, split: str, device: str):
    import h5py

    stem = data_dir / f"camelyonpatch_level_2_split_{split}"
    with h5py.File(f"{stem}_x.h5", "r") as f:
        images = torch.from_numpy(f["x"][...]).to(device).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
    with h5py.File(f"{stem}_y.h5", "r") as f:
        labels = torch.from_numpy(f["y"][...].reshape(-1).astype("float32")).to(device)
    return images, labels


def _random_dihedral(x):
    """A random one of the 8 flips/transposes per image, on the device, without a host sync."""
    n = len(x)
    for move in (lambda t: t.flip(3), lambda t: t.flip(2), lambda t: t.transpose(2, 3)):
        pick = (torch.rand(n, device=x.device) < 0.5).view(n, 1, 1, 1)
        x = torch.where(pick, move(x), x)
    return x


def bench_resident(args) -> list[dict]:
    data_dir, device = Path(args.data_dir), args.device
    train_x, train_y = _load_to_device(data_dir, "train", device)
    valid_x, _ = _load_to_device(data_dir, "valid", device)
    torch.manual_seed(0)
    model = (mlp() if args.model == "mlp" else cnn()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device.startswith("cuda"))
    loss_fn = nn.BCEWithLogitsLoss()
    weights = (1.0 / torch.bincount(train_y.long()).float())[train_y.long()]
    batch = args.resident_batch
    steps = len(train_y) // batch

    def epoch() -> None:
        model.train()
        order = torch.multinomial(weights, steps * batch, replacement=True)
        for s in range(steps):
            idx = order[s * batch : (s + 1) * batch]
            x = _random_dihedral(train_x[idx]).float().div_(127.5).sub_(1.0)
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x), train_y[idx, None]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for s in range(0, len(valid_x), 1024):
                model(valid_x[s : s + 1024].float().div_(127.5).sub_(1.0))
        _sync(device)

    epoch()  # warm-up: allocator, kernels
    seconds = []
    for _ in range(args.resident_epochs):
        t0 = time.perf_counter()
        epoch()
        seconds.append(time.perf_counter() - t0)
    median = statistics.median(seconds)
    print(
        f"torch {args.model} data on {device}, batch {batch}: epoch ({steps * batch} train) + valid ({len(valid_x)}) "
        f"in {median:.2f} s ({steps * batch / median:.0f} train img/s incl. validation)"
    )
    return [
        {
            "model": args.model, "mode": "resident_epoch", "batch_size": batch, "device": device,
            "epoch_seconds": median, "epoch_seconds_all": seconds, "train_images": steps * batch,
            "valid_images": len(valid_x), "images_per_second": steps * batch / median,
        }
    ]  # fmt: skip


def main(argv=None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    results = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",") if b.strip()):
        results += bench_compute(args.model, batch_size, args)
    if args.pipeline:
        if not args.data_dir:
            p.error("--pipeline needs --data-dir (e.g. ~/.cache/jaxpcam/pcam-sample-v1)")
        results += bench_pipeline(args)
    if args.resident:
        if not args.data_dir:
            p.error("--resident needs --data-dir")
        results += bench_resident(args)
    if args.json:
        payload = {"torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
