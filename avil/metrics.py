"""Metrics over a whole split: ``metric(outputs, y) -> float``, higher is better."""
import torch


def accuracy(outputs: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows whose arg-max output is the label. outputs (B, C), y (B,)."""
    return (outputs.argmax(dim=-1) == y).float().mean().item()


def negative_mse(outputs: torch.Tensor, y: torch.Tensor) -> float:
    """−mean squared error, for regression tasks (so that higher is better). outputs (B,) or (B, 1)."""
    return -torch.mean((outputs.reshape(y.shape) - y) ** 2).item()
