"""The contract every ranking model follows: same batch in, same dict of outputs out.

``forward(batch)`` returns ``watch`` (B,) logit (eq. 11), ``stay_time`` (B,) regression output,
``goods_bag`` and ``product_click`` (B,) logits (eq. 13; zeros when the model has no auxiliary
heads), ``reg`` (scalar, the weighted self-supervised regulariser of eq. 10, zero if none),
``shared`` (the intra-channel embedding both the primary and the auxiliary heads read; the adaptive
weighting of eq. 14 takes gradient similarities on it) and ``reg/<name>`` scalars for logging.

A model is a short composition: ``user_state`` (candidate-independent: sequence embeddings and
encoders), ``encode`` (target-dependent feature set), then the shared heads defined here: the
watch tower over ``[features, dynamic context, position]`` (the dynamic context takes the user-candidate
match counts of ``layers/match.py`` too when ``model.match_features`` is on) and, in multi-task modes, MMoE heads for
the three in-channel behaviours over ``inter(features)`` (eLiveRec puts its gate unit there).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eliverec.config import ConfigError, ModelConfig
from eliverec.errors import DataError
from eliverec.features.batch import (
    AUX_TASKS,
    CHANNEL_FIELDS,
    CONTEXT_FIELDS,
    DYNAMIC_DENSE,
    PRODUCT_FIELDS,
    PROFILE_FIELDS,
    task_scores,
)
from eliverec.models.layers import MLP, EmbeddingBank, MMoE, masked_mean
from eliverec.models.layers.match import MATCH_FEATURES, match_inputs

INPUT_KEYS: tuple[str, ...] = (
    "user", "profile", "context", "position", "channel", "dynamic", "dynamic_cats",
    "product_seq", "product_len", "channel_seq", "channel_len",
)  # fmt: skip
USER_KEYS: tuple[str, ...] = ("user", "product_seq", "product_len", "channel_seq", "channel_len")
VOCAB_KEYS: tuple[str, ...] = (
    "user", *PROFILE_FIELDS, *CONTEXT_FIELDS, "position", *CHANNEL_FIELDS, "product", "brand",
)  # fmt: skip
STATIC_FIELDS = 1 + len(PROFILE_FIELDS) + len(CONTEXT_FIELDS)  # user id, profile, spatiotemporal context
DOMAINS: dict[str, tuple[str, str, tuple[str, ...]]] = {  # domain -> (sequence key, length key, fields)
    "live": ("channel_seq", "channel_len", CHANNEL_FIELDS),
    "product": ("product_seq", "product_len", PRODUCT_FIELDS),
}


@dataclass
class Context:
    """Per-candidate inputs: e_c (B, 8d), e_vt (B, d), position (B, d), e_d (B, 2d) and user ids."""

    static: Tensor
    target: Tensor
    position: Tensor
    dynamic: Tensor
    users: Tensor


def check_batch(batch: Mapping[str, Tensor]) -> None:
    """Raise ``DataError`` naming the missing keys of the batch contract (``eliverec.features.batch``)."""
    missing = [k for k in INPUT_KEYS if k not in batch]
    if missing:
        raise DataError(f"batch lacks {missing}; see eliverec/features/batch.py for the contract")


def distinct_user_rows(batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Rows that start a run of identical user-state inputs, and each row's run index.

    The impressions of one feed request share the user and both behaviour sequences, and the
    feature stage writes them next to each other (the trainer batches whole feeds, see
    ``eliverec.training.trainer.FeedBatchSampler``), so the candidate-independent state is computed
    once per run and gathered back: exact, and about feed-size times fewer encoder FLOPs.

    >>> b = {"user": torch.tensor([7, 7, 8, 7]), "product_len": torch.zeros(4), "channel_len": torch.zeros(4),
    ...      "product_seq": torch.zeros(4, 2, 3), "channel_seq": torch.zeros(4, 2, 3)}
    >>> [t.tolist() for t in distinct_user_rows(b)]
    [[0, 2, 3], [0, 0, 1, 2]]
    >>> [t.tolist() for t in distinct_user_rows({k: v[:1] for k, v in b.items()})]  # one row
    [[0], [0]]
    """
    same = batch["user"][1:] == batch["user"][:-1]
    for k in USER_KEYS[1:]:
        eq = batch[k][1:] == batch[k][:-1]
        same &= eq.flatten(1).all(dim=1) if eq.dim() > 1 else eq
    starts = torch.cat([same.new_ones(1), ~same])
    return starts.nonzero().squeeze(1), starts.cumsum(0) - 1


def position_bias(mode: str, relevance: Tensor, exam: Tensor) -> Tensor:
    """The watch logit from a relevance logit and a per-position logit (``model.position_bias``).

    ``additive``: ``r + b_k`` (a shallow position tower added to the logit). ``pal``: the examination
    hypothesis of click models, ``p(watch) = sigmoid(b_k) * sigmoid(r)`` (PAL, Guo et al., RecSys 2019),
    returned as the logit ``log p - log(1 - p)`` so the loss and the sigmoid downstream stay the same.
    Either way the position only shifts or scales a candidate's score by the same amount for every
    candidate at that position, so at the fixed serving position the ranking is by relevance alone.

    >>> r, b = torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.0])
    >>> [round(v, 3) for v in torch.sigmoid(position_bias("pal", r, b)).tolist()]  # 0.5 * sigmoid(r)
    [0.25, 0.44]
    """
    if mode == "additive":
        return relevance + exam
    log_p = (F.logsigmoid(relevance) + F.logsigmoid(exam)).clamp(max=-1e-6)
    return log_p - torch.log(-torch.expm1(log_p))


def sequence_mask(lengths: Tensor, seq_len: int) -> Tensor:
    """(B,) lengths -> (B, L) bool, True on the real events of a left-padded sequence.

    >>> sequence_mask(torch.tensor([2, 0]), 3).tolist()
    [[False, True, True], [False, False, False]]
    """
    return torch.arange(seq_len, device=lengths.device).unsqueeze(0) >= (seq_len - lengths).unsqueeze(1)


class AuxHeads(nn.Module):
    """MMoE over the shared inter-channel input, one gate and one tower per auxiliary task (eq. 13)."""

    def __init__(self, in_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.mmoe = MMoE(in_dim, cfg.experts, cfg.expert_dim, len(AUX_TASKS), cfg.dropout)
        hidden = [max(cfg.expert_dim // 2, 4)]
        self.towers = nn.ModuleList(MLP(cfg.expert_dim, hidden, out=1) for _ in AUX_TASKS)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        outs, _ = self.mmoe(x)
        return {t: tower(o).squeeze(-1) for t, tower, o in zip(AUX_TASKS, self.towers, outs, strict=True)}


class RankingModel(nn.Module, abc.ABC):
    """Base of every model; subclasses set ``name``, ``dual``, ``preset`` and implement ``encode``."""

    name: ClassVar[str] = ""
    dual: ClassVar[bool] = True
    #: ``encode`` takes a one-row user state with many candidates (``run(share_user=True)``): it broadcasts
    #: the state itself instead of reading it expanded to every row (eLiveRec: eq. 6-7 as matrix products).
    reads_shared_state: ClassVar[bool] = False
    preset: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg: ModelConfig, vocab: Mapping[str, int], seq_len: int) -> None:
        super().__init__()
        missing = [k for k in VOCAB_KEYS if k not in vocab]
        if missing:
            raise ConfigError(f"features.vocab lacks {missing} (needed by the model)")
        if cfg.serve_position >= int(vocab["position"]):
            raise ConfigError(f"model.serve_position={cfg.serve_position} must be < features.vocab.position")
        self.cfg, self.seq_len, d = cfg, seq_len, cfg.dim
        self.positions = int(vocab["position"])
        tables = [k for k in VOCAB_KEYS if k != "position" or cfg.position_bias == "input"]
        self.bank = EmbeddingBank({k: int(vocab[k]) for k in tables}, d, cfg.emb_std)
        self.dense = nn.Linear(DYNAMIC_DENSE + (len(MATCH_FEATURES) if cfg.match_features else 0), d)
        self.domains = ("live", "product") if self.dual else ("live",)

    # ------------------------------------------------------------------ subclass interface
    def finish(self, feature_dims: list[int]) -> None:
        """Create the watch tower and the auxiliary heads once the feature widths are known."""
        d = self.cfg.dim
        self.dims = [*feature_dims, 2 * d]  # + dynamic context e_d
        pos_in = d if self.cfg.position_bias == "input" else 0
        self.tower = MLP(sum(self.dims) + pos_in, self.cfg.mlp, out=1, dropout=self.cfg.dropout)  # eq. 11
        if self.cfg.position_bias != "input":  # one scalar per feed position (a shallow position tower)
            self.position_logit = nn.Embedding(self.positions, 1)
            nn.init.zeros_(self.position_logit.weight)
        self.heads = AuxHeads(self.inter_dim(), self.cfg) if self.cfg.mtl != "single" else None

    def inter_dim(self) -> int:
        """Width of the auxiliary heads' input (default: the intra-channel embedding)."""
        return sum(self.dims)

    def user_state(self, seqs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Candidate-independent state (B, ...); default: the embedded sequences themselves."""
        return seqs

    @abc.abstractmethod
    def encode(
        self, x: Context, state: dict[str, Tensor], with_reg: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor | None]:
        """Target-dependent features (list of (B, d_i)), unweighted regularisers, weighted reg total."""

    def inter(self, parts: tuple[Tensor, ...]) -> Tensor:
        """Input of the auxiliary heads from the split intra-channel embedding (default: all of it)."""
        return torch.cat(parts, dim=-1)

    def extra_logit(self, batch: Mapping[str, Tensor]) -> Tensor | None:
        """An additive watch logit (WDL's wide part); none by default."""
        return None

    # ------------------------------------------------------------------ inputs
    def embed_context(self, batch: Mapping[str, Tensor]) -> Context:
        b = self.bank
        static = torch.cat(
            [b.field(batch["user"], "user")]
            + [b.field(batch["profile"][:, i], f) for i, f in enumerate(PROFILE_FIELDS)]
            + [b.field(batch["context"][:, i], f) for i, f in enumerate(CONTEXT_FIELDS)],
            dim=-1,
        )  # e_c, (B, 8d)
        cats = b.field(batch["dynamic_cats"], "category")  # (B, K, d)
        dense = batch["dynamic"].float()
        if self.cfg.match_features:  # explicit match counts beside the dynamic context (not in the paper)
            dense = torch.cat([dense, match_inputs(batch)], dim=-1)
        dyn = torch.cat([self.dense(dense), masked_mean(cats, batch["dynamic_cats"] > 0)], -1)
        pos = b.field(batch["position"], "position") if self.cfg.position_bias == "input" else dyn[:, :0]
        return Context(static, b.item(batch["channel"], CHANNEL_FIELDS), pos, dyn, batch["user"])

    def embed_sequences(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = {"user": self.bank.field(batch["user"], "user")}
        for dom in self.domains:
            seq_key, len_key, fields = DOMAINS[dom]
            out[f"{dom}_e"] = self.bank.item(batch[seq_key], fields)  # E_V / E_S, (B, L, d)
            out[f"{dom}_mask"] = sequence_mask(batch[len_key], batch[seq_key].shape[1])
        return out

    # ------------------------------------------------------------------ forward / serving
    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        # the self-supervised regularisers (eq. 8-10) are training losses: scoring in eval mode skips
        # them (distance correlation is O(batch^2) and dominated scoring time on large batches)
        return self.run(batch, share_user=False, with_reg=self.training)

    def run(self, batch: Mapping[str, Tensor], share_user: bool, with_reg: bool) -> dict[str, Tensor]:
        """Forward pass; ``share_user`` computes the candidate-independent state once from row 0."""
        check_batch(batch)
        one = {k: batch[k][:1] for k in USER_KEYS} if share_user else {}
        x = self.embed_context({**batch, **{k: v for k, v in one.items() if k != "user"}})  # match counts broadcast
        B = x.target.shape[0]
        if share_user:  # one request: row 0's state, broadcast without a copy (or read at batch 1 by encode)
            state = self.user_state(self.embed_sequences(one))
            if not self.reads_shared_state:
                state = {k: v.expand(B, *v.shape[1:]) for k, v in state.items()}
        else:  # runs of identical user-state rows (whole feeds) share one computation
            first, run_of = distinct_user_rows(batch)
            src = batch if len(first) == B else {k: batch[k][first] for k in USER_KEYS}
            state = self.user_state(self.embed_sequences(src))
            if len(first) < B:
                state = {k: v.index_select(0, run_of) for k, v in state.items()}
        feats, regs, reg = self.encode(x, state, with_reg)
        intra = torch.cat([*feats, x.dynamic], dim=-1)  # intra-channel embedding (+ e_d)
        if self.cfg.position_bias == "input":
            watch = self.tower(torch.cat([intra, x.position], dim=-1)).squeeze(-1)
        else:
            watch = self.tower(intra).squeeze(-1)
        extra = self.extra_logit(batch)
        if extra is not None:
            watch = watch + extra
        if self.cfg.position_bias != "input":
            watch = position_bias(self.cfg.position_bias, watch, self.position_logit(batch["position"]).squeeze(-1))
        zero = watch.new_zeros(B)
        out: dict[str, Tensor] = {"watch": watch, "shared": intra, **{t: zero for t in AUX_TASKS}}
        if self.heads is not None:
            out.update(self.heads(self.inter(intra.split(self.dims, dim=-1))))
        out["reg"] = reg if reg is not None else watch.new_zeros(())
        out.update({f"reg/{k}": v.detach() for k, v in regs.items()})
        return out

    @torch.no_grad()
    def score(self, batch: Mapping[str, Tensor], share_user: bool | None = None) -> dict[str, Tensor]:
        """Serving scores: probabilities of watch / goods bag / product click and the stay time.

        The position is replaced by ``model.serve_position``. When every row carries the same user
        and sequences (one request, many candidates; detected unless ``share_user`` is given), the
        candidate-independent state (sequence encoders, prototypes, intention weights) is computed
        once and broadcast. Auxiliary outputs are zeros for a model without auxiliary heads.
        """
        was_training = self.training
        if was_training:  # Module.eval/train walk every submodule: skip it when already in eval mode
            self.eval()
        try:
            b = dict(batch)
            b["position"] = torch.full_like(batch["position"], self.cfg.serve_position)
            share = self.single_user(b) if share_user is None else share_user
            out = self.run(b, share_user=share, with_reg=False)
        finally:
            if was_training:
                self.train()
        return task_scores(out, has_aux=self.heads is not None)

    @staticmethod
    def single_user(batch: Mapping[str, Tensor]) -> bool:
        """True when every row has row 0's user and behaviour sequences."""
        if batch["user"].shape[0] < 2:
            return False
        return all(bool((batch[k] == batch[k][:1]).all()) for k in USER_KEYS)
