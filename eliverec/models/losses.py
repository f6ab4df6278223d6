"""Joint training objective (eq. 11, 13-15) with single, vanilla and adaptive multi-task modes.

``L = L_rec + sum_i w_i L_task_i + L_reg`` (eq. 15): ``L_rec`` the watch cross-entropy (eq. 11),
``L_task_i`` MSE for stay time and cross-entropy for goods bag / product click (eq. 13), ``L_reg``
the model's ``reg`` output (eq. 10).

Auxiliary labels are within-visit (a behaviour inside the channel the user entered), so by default
(``model.aux_scope: watched``) the auxiliary losses are averaged over watched impressions only: the
heads estimate ``p(a_i | watched)`` and their gradients are not a copy of the watch task's.
``aux_scope: all`` uses every impression (labels are 0 when not watched).

Adaptive mode (eq. 14). For each auxiliary task ``i`` the weighting network (two-layer MLP) reads
``[cos_i, log(1 + L_task_i), type_i]`` and ``type_i`` a learned task embedding. ``cos_i`` is taken, by
``model.mtl_grad_on``, either on the shared representation (``activation``, default):
``cos(dL_rec/dS, dL_task_i/dS)`` with ``S = outputs["shared"]`` (the intra-channel embedding both heads
read; four extra backward passes through the heads only), or, as the paper writes it, on the shared
parameters (``parameters``): ``cos(dL_rec/dθ, dL_task_i/dθ)`` with ``θ`` the dense parameters both the
watch tower and the auxiliary heads depend on (:func:`shared_parameters`: the sequence encoders,
retrieval and dynamic-context layers; not the embedding tables, whose sparse rows differ per batch,
nor either side's own head). The parameter form runs the four extra backward passes through the
encoders; its cost per step is measured in ``benchmarks/results/mechanism.md``. Its outputs are turned into
weights that cannot collapse: ``w = budget * softmax(logits)`` with ``budget = sum(model.mtl_weights)``
(0.7, the vanilla total). The network is trained to maximise alignment with an entropy bonus,
``J = -sum_i p_i cos_i + beta * sum_i p_i log p_i`` (``beta = model.weight_entropy``), whose optimum is
``p_i ∝ exp(cos_i / beta)``: tasks whose gradient agrees with the primary task get more weight,
conflicting ones less, none ever exactly zero. The weights enter eq. 15 detached (the task losses
cannot push their own weights down), and ``J`` enters the returned total as ``J - J.detach()``: the
value logged is exactly eq. 15 while the gradient also trains the weighting network.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eliverec.config import Settings
from eliverec.errors import EliverecError
from eliverec.features.batch import AUX_TASKS
from eliverec.models.layers import MLP
from eliverec.models.registry import effective_model_config

TASK_KIND: dict[str, str] = {"stay_time": "regression", "goods_bag": "binary", "product_click": "binary"}


class TaskWeighting(nn.Module):
    """Eq. 14: ``w_i = budget * softmax_i(MLP([cos_i, log1p(L_i), type_i]))``.

    >>> tw = TaskWeighting(tasks=3, hidden=8, budget=0.7, entropy=0.5)
    >>> w, p = tw(torch.tensor([1.0, 0.0, -1.0]), torch.tensor([0.5, 0.5, 0.5]))
    >>> round(float(w.sum()), 4), bool((w > 0).all())
    (0.7, True)
    """

    def __init__(self, tasks: int, hidden: int, budget: float, entropy: float, type_dim: int = 4) -> None:
        super().__init__()
        self.budget, self.entropy = budget, entropy
        self.type_emb = nn.Embedding(tasks, type_dim)
        self.net = MLP(2 + type_dim, [hidden], out=1, out_bias=False)  # a bias is void under softmax

    def forward(self, cos: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
        """Weights (T,) summing to the budget, and the probabilities (T,) they come from."""
        x = torch.cat([cos.unsqueeze(-1), torch.log1p(losses).unsqueeze(-1), self.type_emb.weight], dim=-1)
        p = torch.softmax(self.net(x).squeeze(-1), dim=0)
        return self.budget * p, p

    def objective(self, p: Tensor, cos: Tensor) -> Tensor:
        """``J = -sum p_i cos_i + beta sum p_i log p_i`` (minimised; optimum ``p ∝ exp(cos / beta)``)."""
        return -(p * cos).sum() + self.entropy * (p * torch.log(p.clamp(min=1e-12))).sum()


#: Parameters that are not eq. 14's shared θ: embedding tables, the watch tower (with WDL's wide part and the
#: position logit), the auxiliary heads and eLiveRec's gate unit (eq. 12, read by the auxiliary heads only).
NOT_SHARED: tuple[str, ...] = ("bank.", "wide.", "tower.", "position_logit.", "heads.", "gate.")


def shared_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Eq. 14's ``θ``: the trainable dense parameters upstream of the intra-channel embedding.

    >>> net = nn.ModuleDict({"bank": nn.Embedding(3, 2), "backbone": nn.Linear(2, 2), "tower": nn.Linear(2, 1)})
    >>> [tuple(p.shape) for p in shared_parameters(net)]
    [(2, 2), (2,)]
    """
    tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}  # sparse rows, not θ
    return [p for n, p in model.named_parameters()
            if p.requires_grad and not n.startswith(NOT_SHARED) and id(p) not in tables]


def _flat_grad(loss: Tensor, inputs: list[Tensor]) -> Tensor | None:
    """``d loss / d inputs`` flattened into one vector (unused inputs count as zeros); None when none is used."""
    if not loss.requires_grad:
        return None
    grads = torch.autograd.grad(loss, inputs, retain_graph=True, allow_unused=True)
    if all(g is None for g in grads):
        return None
    return torch.cat([(torch.zeros_like(x) if g is None else g).flatten() for g, x in zip(grads, inputs, strict=True)])


def _masked_mean(x: Tensor, m: Tensor) -> Tensor:
    return (x * m).sum() / m.sum().clamp(min=1.0)


class MultiTaskLoss(nn.Module):
    """``forward(outputs, batch, model) -> (total, logs)``; put ``loss.parameters()`` in the optimizer."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        cfg = effective_model_config(settings.model)
        self.mode, self.aux_scope, self.grad_on = cfg.mtl, cfg.aux_scope, cfg.mtl_grad_on
        self.register_buffer("fixed", torch.tensor(cfg.mtl_weights, dtype=torch.float32))
        self.register_buffer("last_weights", torch.tensor(cfg.mtl_weights, dtype=torch.float32))
        self.weighting = (
            TaskWeighting(len(AUX_TASKS), cfg.weight_hidden, sum(cfg.mtl_weights), cfg.weight_entropy)
            if self.mode == "adaptive" else None
        )  # fmt: skip

    def task_losses(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> list[Tensor]:
        """Eq. 13 per auxiliary task, on watched impressions only unless ``aux_scope: all``."""
        m = (batch["watch"] > 0.5).float() if self.aux_scope == "watched" else torch.ones_like(batch["watch"])
        out = []
        for t in AUX_TASKS:
            y, yhat = batch[t].float(), outputs[t]
            if TASK_KIND[t] == "regression":
                per = (yhat - y) ** 2
            else:
                per = F.binary_cross_entropy_with_logits(yhat, y, reduction="none")
            out.append(_masked_mean(per, m))
        return out

    @staticmethod
    def grad_cosines(l_rec: Tensor, losses: list[Tensor], shared: Tensor | list[Tensor]) -> Tensor:
        """Eq. 14's ``s(∇L_rec, ∇L_i)`` for each auxiliary loss, gradients taken with respect to ``shared``
        (one activation, or a list of parameters whose gradients are concatenated); 0 when one vanishes."""
        inputs = [shared] if isinstance(shared, Tensor) else list(shared)
        g_rec = _flat_grad(l_rec, inputs)
        if g_rec is None:
            return l_rec.new_zeros(len(losses))
        cos = [torch.zeros((), device=g_rec.device) if g is None else
               F.cosine_similarity(g_rec, g, dim=0, eps=1e-12) for g in (_flat_grad(x, inputs) for x in losses)]
        return torch.stack(cos).detach()

    def grad_inputs(self, outputs: Mapping[str, Tensor], model: nn.Module | None) -> Tensor | list[Tensor]:
        """What eq. 14 differentiates with respect to: ``outputs["shared"]`` or the model's shared θ."""
        if self.grad_on == "activation":
            return outputs["shared"]
        if model is None:
            raise EliverecError("model.mtl_grad_on=parameters needs the model: call the loss as loss(outputs, batch, "
                                "model)")
        return shared_parameters(model)

    def forward(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor], model: nn.Module | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        l_rec = F.binary_cross_entropy_with_logits(outputs["watch"], batch["watch"].float())  # eq. 11
        logs: dict[str, float] = {"loss/rec": float(l_rec.detach())}
        total = l_rec
        if self.mode != "single":
            losses = self.task_losses(outputs, batch)
            training = torch.is_grad_enabled() and outputs["watch"].requires_grad
            if training and not outputs[AUX_TASKS[0]].requires_grad:
                raise EliverecError(f"model.mtl={self.mode} but the model has no auxiliary heads; "
                                    "build the model and the loss from the same settings")
            weights = self.fixed
            if self.weighting is not None and training:
                cos = self.grad_cosines(l_rec, losses, self.grad_inputs(outputs, model))
                w, p = self.weighting(cos, torch.stack(losses).detach())
                objective = self.weighting.objective(p, cos)
                total = total + (objective - objective.detach())  # trains the weighting net, adds 0
                weights = w.detach()
                self.last_weights.copy_(weights)
                logs["loss/weighting"] = float(objective.detach())
                logs.update({f"cos/{t}": float(c) for t, c in zip(AUX_TASKS, cos, strict=True)})
            elif self.weighting is not None:
                weights = self.last_weights
            for t, w_i, loss in zip(AUX_TASKS, weights, losses, strict=True):
                total = total + w_i * loss  # eq. 15
                logs[f"loss/{t}"] = float(loss.detach())
                logs[f"weight/{t}"] = float(w_i)
        total = total + outputs["reg"]
        logs["loss/reg"] = float(outputs["reg"].detach())
        logs.update({k: float(v) for k, v in outputs.items() if k.startswith("reg/")})
        logs["loss/total"] = float(total.detach())
        return total, logs
