"""SAM / ASAM: the update equals the analytic formula, ρ = 0 is the base optimiser, ASAM's
perturbation is scale-invariant, and the wrapper cooperates with schedulers and state."""

from __future__ import annotations

import copy

import pytest
import torch

from legato.errors import LegatoError
from legato.train.sam import SAM

torch.set_num_threads(1)


def quadratic(n: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A symmetric positive-definite A and b for L(w) = ½ wᵀAw − bᵀw."""
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=g, dtype=torch.float64)
    return m @ m.T + n * torch.eye(n, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)


def test_sam_step_matches_analytic_formula_on_quadratic():
    a, b = quadratic()
    w0 = torch.linspace(-1.0, 2.0, 5, dtype=torch.float64)
    w = torch.nn.Parameter(w0.clone())
    rho, lr = 0.3, 0.05
    opt = SAM([w], torch.optim.SGD, rho=rho, lr=lr)

    def closure():
        loss = 0.5 * w @ a @ w - b @ w
        loss.backward()
        return loss

    for _ in range(3):
        w_before = w.detach().clone()
        g = a @ w_before - b
        eps = rho * g / g.norm()
        g_sam = a @ (w_before + eps) - b
        expected = w_before - lr * g_sam
        opt.step(closure)
        torch.testing.assert_close(w.detach(), expected, rtol=1e-13, atol=1e-13)
    assert not torch.equal(w.detach(), w0)


def test_first_second_step_api_equals_closure_api_with_adam():
    a, b = quadratic(seed=3)
    w1 = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    w2 = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    o1 = SAM([w1], torch.optim.Adam, rho=0.1, lr=0.01)
    o2 = SAM(None, torch.optim.Adam([w2], lr=0.01), rho=0.1)  # wrap an existing instance
    ref = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    adam = torch.optim.Adam([ref], lr=0.01)
    for _ in range(4):
        o1.step(lambda: (0.5 * w1 @ a @ w1 - b @ w1).backward())
        (0.5 * w2 @ a @ w2 - b @ w2).backward()
        o2.first_step(zero_grad=True)
        (0.5 * w2 @ a @ w2 - b @ w2).backward()
        o2.second_step(zero_grad=True)
        # reference: Adam fed by hand with the gradient at w + ρ g/|g|
        with torch.no_grad():
            g = a @ ref - b
            ref.grad = a @ (ref + 0.1 * g / g.norm()) - b
        adam.step()
        assert torch.equal(w1.detach(), w2.detach())
        torch.testing.assert_close(w1.detach(), ref.detach(), rtol=0, atol=1e-15)


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1 = torch.nn.Linear(3, 8)
        self.l2 = torch.nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.tanh(self.l1(x)))


@pytest.mark.parametrize("base", [torch.optim.Adam, torch.optim.SGD, torch.optim.RMSprop])
def test_rho_zero_reproduces_base_optimizer_exactly(base):
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    n1 = Net()
    n2 = Net()
    n2.load_state_dict(n1.state_dict())
    kw = {"lr": 0.01, "momentum": 0.9} if base is torch.optim.SGD else {"lr": 0.01}
    o1, o2 = base(n1.parameters(), **kw), SAM(n2.parameters(), base, rho=0.0, **kw)
    for _ in range(5):
        o1.zero_grad()
        torch.nn.functional.mse_loss(n1(x), y).backward()
        o1.step()
        o2.step(lambda: torch.nn.functional.mse_loss(n2(x), y).backward())
        for p1, p2 in zip(n1.parameters(), n2.parameters(), strict=True):
            assert torch.equal(p1, p2)


def test_asam_perturbation_formula_and_scale_invariance():
    """ε = ρ T² g / |T g| with T = |w| + η; and with L_c(v) = L(v / c) the perturbed loss is
    the same in both parameterisations (ASAM) but not for plain SAM."""
    a, b = quadratic(4, seed=1)
    w0 = torch.tensor([0.5, -2.0, 1.5, 0.1], dtype=torch.float64)
    c = torch.tensor([10.0, 0.1, 3.0, 1.0], dtype=torch.float64)
    rho, eta = 0.2, 0.01

    def perturbed_loss(scale: torch.Tensor, adaptive: bool, eta: float) -> tuple[float, torch.Tensor]:
        v = torch.nn.Parameter(w0 * scale)
        opt = SAM([v], torch.optim.SGD, rho=rho, adaptive=adaptive, eta=eta, lr=0.1)
        loss = lambda: 0.5 * (v / scale) @ a @ (v / scale) - b @ (v / scale)  # noqa: E731
        loss().backward()
        g, t = v.grad.clone(), v.detach().abs() + eta
        opt.first_step()
        eps = v.detach() - w0 * scale
        return float(loss().detach()), eps, (g, t)

    _, eps, (g, t) = perturbed_loss(torch.ones(4, dtype=torch.float64), True, eta)
    torch.testing.assert_close(eps, rho * t**2 * g / (t * g).norm(), rtol=1e-13, atol=0)
    l1, _, _ = perturbed_loss(torch.ones(4, dtype=torch.float64), True, 0.0)
    l2, _, _ = perturbed_loss(c, True, 0.0)
    assert l1 == pytest.approx(l2, rel=1e-12)
    s1, _, _ = perturbed_loss(torch.ones(4, dtype=torch.float64), False, 0.0)
    s2, _, _ = perturbed_loss(c, False, 0.0)
    assert abs(s1 - s2) > 1e-3


def test_weights_restored_exactly_and_zero_gradient_is_safe():
    w = torch.nn.Parameter(torch.tensor([0.1, 0.2, 0.3]))
    opt = SAM([w], torch.optim.SGD, rho=0.05, lr=0.0)
    w0 = w.detach().clone()
    (w**3).sum().backward()
    opt.first_step(zero_grad=True)
    assert not torch.equal(w.detach(), w0)
    (w**3).sum().backward()
    opt.second_step()  # lr = 0: the weights must come back bit for bit
    assert torch.equal(w.detach(), w0)
    w.grad = torch.zeros(3)
    opt.first_step()
    assert torch.isfinite(w).all() and torch.equal(w.detach(), w0)
    opt.restore()


def test_scheduler_and_state_dict_act_on_base_optimizer():
    w = torch.nn.Parameter(torch.ones(2))
    opt = SAM([w], torch.optim.Adam, rho=0.05, lr=1e-2)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    sched.step(1.0)
    sched.step(2.0)  # no improvement: lr halves
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(5e-3)
    opt.step(lambda: (w**2).sum().backward())
    state = copy.deepcopy(opt.state_dict())  # torch shares the tensors otherwise
    assert "step" in state["state"][0]
    w2 = torch.nn.Parameter(w.detach().clone())
    opt2 = SAM([w2], torch.optim.Adam, rho=0.05, lr=1e-2)
    opt2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == pytest.approx(5e-3)
    opt.step(lambda: (w**2).sum().backward())
    opt2.step(lambda: (w2**2).sum().backward())
    assert torch.equal(w, w2)


def test_bad_arguments():
    w = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(LegatoError):
        SAM([w], torch.optim.SGD, rho=-1.0, lr=0.1)
    with pytest.raises(LegatoError):
        SAM([w], torch.optim.SGD([w], lr=0.1), rho=0.1)
    with pytest.raises(LegatoError):
        SAM([w], torch.optim.SGD, lr=0.1).step()
