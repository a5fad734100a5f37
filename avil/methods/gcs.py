"""gcs: auxiliary gradients gated by their cosine similarity with the target's.

Du, Czarnecki, Jayakumar, Farajtabar, Pascanu, Lakshminarayanan, "Adapting
Auxiliary Losses Using Gradient Similarity", arXiv 1812.02224 (2018). With
G_main the main task's gradient and G_aux an auxiliary's, both on the shared
parameters, the paper's update is

    weighted:    θ ← θ − η (G_main + max(0, cos(G_main, G_aux)) · G_aux)
    unweighted:  θ ← θ − η (G_main + [cos(G_main, G_aux) ≥ 0] · G_aux)

so an auxiliary gradient that would increase the main loss (to first order)
is dropped. Task-specific parameters (the heads) get their own task's
gradient unchanged.

Schedule (ours; the paper trains one main and one auxiliary loss per step):
an epoch takes exactly as many optimizer steps as a ``uniform`` epoch,
Σ_t ⌈|D_t^train| / batch_size⌉, following ``uniform``'s seeded interleaved
schedule of batches. A schedule slot of the target is a plain target step;
a slot of auxiliary a is one combined step from a target batch (the target's
training set cycled through fresh shuffles) and a's batch:

    g_t ← ∇ L_t*(target batch)    (encoder + target head, one flat buffer)
    g_a ← ∇ L_a(aux batch)        (encoder + a's head)
    flat.grad[encoder]     ← combine(g_t[encoder], [g_a[encoder]])
    flat.grad[target head] ← g_t[target head];  flat.grad[a's head] ← g_a[a's head]
    one step of the shared optimizer

The cosine is taken over the whole encoder, one vector (the paper's shared
parameters), on the flat gradient buffer of avil/flat.py: no loop over
parameters. History.task_weights records each auxiliary's mean gate per
epoch (target: 1).
"""
from typing import Dict, Iterator, Sequence, Tuple, Union

import torch

from ..data import to_device
from .base import Method, Slot

EPS = 1e-12


def combine(g_target: torch.Tensor, g_aux: Union[torch.Tensor, Sequence[torch.Tensor]],
            variant: str = "weighted") -> Tuple[torch.Tensor, torch.Tensor]:
    """Du et al.'s combination of gradients on the shared parameters.

    g_target: (S,) the target's gradient. g_aux: (K, S) or a list of K (S,)
    auxiliary gradients. Returns ``(g_target + Σ_k w_k g_aux[k]  (S,), w (K,))``
    with w_k = max(0, cos(g_target, g_aux[k])) ("weighted") or
    [cos ≥ 0] ("unweighted"). A zero gradient has cosine 0.
    """
    aux = g_aux if isinstance(g_aux, torch.Tensor) else torch.stack(list(g_aux))  # (K, S)
    cos = (aux @ g_target) / (aux.norm(dim=1) * g_target.norm()).clamp_min(EPS)  # (K,)
    if variant == "weighted":
        weights = cos.clamp_min(0.0)
    elif variant == "unweighted":
        weights = (cos >= 0).to(aux.dtype)
    else:
        raise ValueError(f"gcs variant {variant!r}: must be 'weighted' or 'unweighted'.")
    return g_target + weights @ aux, weights


class GCS(Method):
    name = "gcs"
    # What History.task_weights holds for this method: figures label their axis with it.
    weight_label = "mean gate on the\naux. gradient (0–1)"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.optimizers = {"model": self.make_optimizer(self.model.parameters())}
        self.shared = self.flat.range_of(self.model.encoder)
        self.target_head = self.flat.range_of(self.model.heads[self.target])
        target_head_params = list(self.model.heads[self.target].parameters())
        # A combined step touches the encoder and both heads; the optimizer
        # skips every other head (its .grad is None), as in ``uniform``.
        self.pair_params = {name: self.task_params[name] + target_head_params
                            for name in self.names if name != self.target}
        self.g_target = torch.zeros(self.flat.numel, device=self.device)  # (N,)

    def start_epoch(self, epoch: int) -> None:
        self.gates = {name: [] for name in self.names if name != self.target}  # each slot's gate (0-d)

    def train_slot(self, task: str, streams: Dict[str, Iterator[Slot]]) -> Dict[str, torch.Tensor]:
        """A target slot is a plain target step; an auxiliary slot one combined step."""
        optimizer = self.optimizers["model"]
        _, target_batch = next(streams[self.target])
        if task == self.target:
            return {task: self.step(optimizer, task, target_batch)}
        _, aux_batch = next(streams[task])
        loss_t, loss_a, gate = self.combined_step(optimizer, task, target_batch, aux_batch)
        self.gates[task].append(gate)
        return {self.target: loss_t, task: loss_a}

    def finish_epoch(self) -> None:
        for name, gates in self.gates.items():
            self.task_weights[name] = (sum(gates) / len(gates)).item()

    def combined_step(self, optimizer, aux: str, target_batch, aux_batch):
        """One optimizer step on the gated sum of the target's and ``aux``'s gradients."""
        loss_t = self.task_loss(self.target, target_batch)
        optimizer.backward(loss_t)
        self.g_target.copy_(self.flat.grad)  # g_t (N,): encoder + target head
        # Bind before the auxiliary backward so the target head's .grad is a
        # view too; the auxiliary loss leaves it at zero.
        self.flat.bind_grads(self.pair_params[aux])
        with self.autocast():
            loss_a = self.tasks[aux].loss_fn(*self.forward(aux, aux_batch))
        optimizer.backward(loss_a)  # flat.grad = g_a: encoder + aux head
        s, h = self.shared, self.target_head
        combined, weights = combine(self.g_target[s], self.flat.grad[s].unsqueeze(0), self.config.gcs_variant)
        self.flat.grad[s] = combined
        self.flat.grad[h] = self.g_target[h]
        optimizer.step()
        return loss_t.detach(), loss_a.detach(), weights[0]

    def forward(self, task: str, batch):
        """(outputs, y) of one batch, without rebinding the gradient buffer."""
        x, y = to_device(batch, self.device)
        return self.model(x, task), y
