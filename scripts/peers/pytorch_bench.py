"""PyTorch (CPU) and numpy on the protocol of wgpu-nn's `bench --peers`, for side-by-side runs.

    python3 scripts/peers/pytorch_bench.py [--threads 2]

Prints one JSON object: matmul GFLOP/s at the bench's three target shapes (torch and numpy),
and MNIST training samples/s, softmax cross-entropy from the logits: the "lesson" workload
(784-128-64-10, ReLU, dropout 0.2, Adam lr 0.001) and the "sgd" workload (no dropout, plain
SGD lr 0.01) at batch 1, 16, 64, 256 and 1024, the "cnn" workload (two 3x3 convolutions with
batch norms, ReLU and 2x2 max pooling, dense 128, dropout 0.5, Adam lr 0.001) at batch 32
and 128, and the narrow networks: "boundary" (2-64-64-3 tanh, Adam lr 0.01, batch 256),
"digits" (64-64-32-10 ReLU, dropout 0.2 after the first, Adam lr 0.001, batch 64) and
"streetlight" (3-4-1 ReLU, MSE, SGD lr 0.2, batch 16). Each step takes its batch from host memory (8
random batches cycled); a figure is the median of 3 blocks of 50 steps after 20 warm-up steps.
"""

import argparse
import json
import time

import numpy as np
import torch


def median(values):
    return sorted(values)[len(values) // 2]


def timed(f, repeats):
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return median(times)


def matmul(m, k, n, use_numpy):
    a, b = torch.rand(m, k) * 2 - 1, torch.rand(k, n) * 2 - 1
    if use_numpy:
        a, b = a.numpy(), b.numpy()
    return 2.0 * m * k * n / timed(lambda: a @ b, 15) / 1e9


def mlp(dropout):
    layers = [torch.nn.Linear(784, 128), torch.nn.ReLU()]
    layers += [torch.nn.Dropout(dropout)] if dropout else []
    layers += [torch.nn.Linear(128, 64), torch.nn.ReLU()]
    layers += [torch.nn.Dropout(dropout)] if dropout else []
    layers += [torch.nn.Linear(64, 10)]
    return torch.nn.Sequential(*layers)


def cnn():
    """wgpu-nn's ModelConfig::mnist_cnn (its log-softmax and NLL as cross-entropy)."""
    nn = torch.nn
    block = lambda c_in, c_out: [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)
    ]
    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)), *block(1, 16), *block(16, 32), nn.Flatten(),
        nn.Linear(1568, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
    )


def boundary():
    nn = torch.nn
    return nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 3))


def digits():
    nn = torch.nn
    return nn.Sequential(
        nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)
    )


def streetlight():
    nn = torch.nn
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))


def train(batch, model, optimizer, lr, inputs=784, classes=10, mse=False):
    torch.manual_seed(0)
    model = model()
    opt = optimizer(model.parameters(), lr=lr)
    loss_fn = torch.nn.MSELoss() if mse else torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(1)
    target = lambda: (
        rng.random((batch, classes), dtype=np.float32) if mse else rng.integers(0, classes, batch)
    )
    batches = [(rng.random((batch, inputs), dtype=np.float32), target()) for _ in range(8)]
    step = 0

    def block(steps):
        nonlocal step
        t = time.perf_counter()
        for _ in range(steps):
            x, y = batches[step % 8]
            step += 1
            loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        loss.item()
        return time.perf_counter() - t

    block(20)
    return 50 * batch / median([block(50) for _ in range(3)])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    threads = parser.parse_args().threads
    torch.set_num_threads(threads)
    out = {"torch": torch.__version__, "numpy": np.__version__, "threads": threads}
    shapes = [(1024, 1024, 1024), (256, 784, 128), (256, 128, 64)]
    for m, k, n in shapes:
        out[f"torch matmul {m}x{k}x{n} GFLOP/s"] = matmul(m, k, n, False)
    for batch in [1, 16, 64, 256, 1024]:
        out[f"lesson batch {batch} samples/s"] = train(batch, lambda: mlp(0.2), torch.optim.Adam, 0.001)
        out[f"sgd batch {batch} samples/s"] = train(batch, lambda: mlp(0.0), torch.optim.SGD, 0.01)
    for batch in [32, 128]:
        out[f"cnn batch {batch} samples/s"] = train(batch, cnn, torch.optim.Adam, 0.001)
    out["boundary batch 256 samples/s"] = train(256, boundary, torch.optim.Adam, 0.01, 2, 3)
    out["digits batch 64 samples/s"] = train(64, digits, torch.optim.Adam, 0.001, 64, 10)
    out["streetlight batch 16 samples/s"] = train(16, streetlight, torch.optim.SGD, 0.2, 3, 1, True)
    # numpy last: its BLAS threads spin after each call and, interleaved with torch's, once
    # made a torch product run at 14 GFLOP/s instead of 300.
    for m, k, n in shapes:
        out[f"numpy matmul {m}x{k}x{n} GFLOP/s"] = matmul(m, k, n, True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
