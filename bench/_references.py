"""Reference loops written without tunelab's trainer: plain PyTorch, as the sources train.

bench/reproduce.py runs them beside tunelab on the same arrays (tunelab's loader gives the data, a
split being data, not training) and compares the test accuracies over seeds.

- ``mnist1d_paper``: the MNIST-1D paper's models (github.com/greydanus/mnist1d, notebooks/models.py:
  LinearBase, MLPBase, ConvBase) trained as its notebooks/train.py does: Adam 1e-2, batch 100, the
  training set walked in order (batch ``step * 100 mod 4000``), ``steps + 1`` steps, torch's default init.
- ``mnist_mlp``: the 784-256-128-10 ReLU MLP, He-normal weights, zero biases, torch.optim.Adam,
  CosineAnnealingLR stepped per epoch, shuffled batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Residual(nn.Module):
    """MLPBase of the paper: h = relu(W1 x); h = h + relu(W2 h); W3 h."""

    def __init__(self, n_in: int, n_out: int, hidden: int = 100) -> None:
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(n_in, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, n_out)

    def forward(self, x):
        h = self.l1(x).relu()
        return self.l3(h + self.l2(h).relu())


class _Conv(nn.Module):
    """ConvBase of the paper: Conv1d 1->25 k5, 25->25 k3, 25->25 k3 (stride 2, padding 1), ReLU, Linear 125->10."""

    def __init__(self, n_out: int, channels: int = 25, linear_in: int = 125) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.c2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.c3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.out = nn.Linear(linear_in, n_out)

    def forward(self, x):
        h = self.c3(self.c2(self.c1(x.view(len(x), 1, -1)).relu()).relu()).relu()
        return self.out(h.flatten(1))


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        model.eval()
        return (model(x).argmax(1) == y).float().mean().item()


def mnist1d_paper(model: str, data, seed: int, steps: int = 6000) -> float:
    """Test accuracy of the paper's ``model`` (logistic, mlp or cnn) after ``steps`` + 1 steps."""
    torch.manual_seed(seed)
    x, y = data.x_train.reshape(len(data.y_train), -1), data.y_train
    n_in = x.shape[1]
    net = {"logistic": lambda: nn.Linear(n_in, 10), "mlp": lambda: _Residual(n_in, 10),
           "cnn": lambda: _Conv(10)}[model]()
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for step in range(steps + 1):
        i = (step * 100) % len(y)
        loss = F.cross_entropy(net(x[i:i + 100]), y[i:i + 100])
        loss.backward()
        opt.step()
        opt.zero_grad()
    return _accuracy(net, data.x_test.reshape(len(data.y_test), -1), data.y_test)


def mnist_mlp(data, seed: int, epochs: int = 10, batch: int = 128) -> float:
    """Test accuracy of the plain-PyTorch 784-256-128-10 Adam MLP with cosine decay over ``epochs``."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                        nn.Linear(128, 10))
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    _shuffled_epochs(net, opt, data, seed, epochs, batch, lambda out, yb: F.cross_entropy(out, yb),
                     after_epoch=sched.step)
    return _accuracy(net, data.x_test, data.y_test)


def _shuffled_epochs(net: nn.Module, opt, data, seed: int, epochs: int, batch: int, loss_of,
                     after_step=None, after_epoch=None) -> None:
    """The common loop: each epoch a permutation from a generator seeded by ``seed``, batches sliced
    from it, ``loss_of(outputs, labels)``, a step; ``after_step`` / ``after_epoch`` (a schedule's step)."""
    gen = torch.Generator().manual_seed(seed)
    x, y = data.x_train, data.y_train
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch):
            idx = perm[i:i + batch]
            loss = loss_of(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step()
        if after_epoch is not None:
            after_epoch()


def book_net() -> nn.Sequential:
    """MultiLayerNet of "Deep Learning from Scratch" ch. 6: 784-(100 x 6)-10 ReLU, He init, zero biases."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = 784
    for out in [100] * 6 + [10]:
        lin = nn.Linear(width, out)
        nn.init.normal_(lin.weight, 0.0, (2.0 / width) ** 0.5)
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.ReLU()] if out != 10 else [lin]
        width = out
    return nn.Sequential(*layers)


def book_sgd(x, y, x_val, y_val, lr: float, weight_decay: float, seed: int, epochs: int = 50) -> float:
    """The book's Trainer: batches of 100 drawn with replacement, epochs x (n / 100) steps of plain SGD
    on cross-entropy plus 0.5 * weight_decay * |W|^2 over the weights (not the biases); the validation
    accuracy at the end."""
    import numpy as np

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = book_net()
    for _ in range(epochs * max(len(y) // 100, 1)):
        idx = torch.from_numpy(rng.choice(len(y), 100))
        loss = F.cross_entropy(net(x[idx]), y[idx])
        loss = loss + 0.5 * weight_decay * sum((p ** 2).sum() for n, p in net.named_parameters() if n.endswith("weight"))
        net.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= lr * p.grad
    return _accuracy(net, x_val, y_val)


def book_first_500(seed: int):
    """The book's data for its search: the first 500 MNIST training images (pixels / 255), shuffled
    with ``seed``, the first 100 held out: (x_train, y_train, x_val, y_val)."""
    import numpy as np

    from tunelab.config import DataConfig
    from tunelab.data.sources import DATASETS

    raw = DATASETS.get("mnist")(DataConfig(name="mnist"))
    x = torch.as_tensor(np.asarray(raw.x_train[:500]), dtype=torch.float32).reshape(500, -1) / 255
    y = torch.as_tensor(np.asarray(raw.y_train[:500])).long()
    p = torch.from_numpy(np.random.default_rng(seed).permutation(500))
    return x[p[100:]], y[p[100:]], x[p[:100]], y[p[:100]]


def zalando_keras_mlp(data, seed: int, epochs: int = 100, batch: int = 64) -> float:
    """The Zalando table's MLP 256-128-100 as its Keras code trains it, rewritten in plain PyTorch
    (github.com/heitorrapela/fashion-mnist-mlp, fashion_mnist_mlp.py): tanh layers with dropout 0.4,
    He-normal weights (Keras 2: a normal truncated at 2 sd, sd sqrt(2 / fan_in)), zero biases; a sigmoid
    on the 10 outputs, which Keras' categorical cross-entropy divides by their sum; SGD with Nesterov
    momentum 0.975 at lr 0.01 decayed as lr / (1 + 2e-6 * iterations) (torch's Nesterov form, which
    equals Keras' at a constant lr; the decay moves the lr by 13 % over the run); batch 64; test accuracy
    after ``epochs``."""
    torch.manual_seed(seed)
    sizes = [784, 256, 128, 100, 10]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(sizes, sizes[1:]):
        lin = nn.Linear(a, b)
        sd = (2.0 / a) ** 0.5
        nn.init.trunc_normal_(lin.weight, 0.0, sd, -2 * sd, 2 * sd)
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.Tanh(), nn.Dropout(0.4)] if b != 10 else [lin, nn.Sigmoid()]
    net = nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.975, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1 / (1 + 2e-6 * it))  # stepped per batch

    def keras_loss(out, yb):
        out = out.clamp(1e-7, 1 - 1e-7)
        prob = out.gather(1, yb.unsqueeze(1)).squeeze(1) / out.sum(1)  # Keras: y_pred / sum(y_pred)
        return -prob.clamp_min(1e-7).log().mean()

    _shuffled_epochs(net, opt, data, seed, epochs, batch, keras_loss, after_step=sched.step)
    return _accuracy(net, data.x_test, data.y_test)
