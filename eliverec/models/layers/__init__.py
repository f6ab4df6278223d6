"""Reusable model layers; each implements one equation of the paper (or of a baseline's paper)."""

from eliverec.models.layers.attention import (
    DinAttention,
    MultiHeadTargetAttention,
    masked_max,
    masked_mean,
    masked_softmax,
)
from eliverec.models.layers.coaction import CoActionUnit
from eliverec.models.layers.embedding import EmbeddingBank
from eliverec.models.layers.gate import GateUnit
from eliverec.models.layers.hgn import HGNEncoder
from eliverec.models.layers.mlp import MLP
from eliverec.models.layers.mmoe import MMoE
from eliverec.models.layers.orthogonal import OrthogonalMap
from eliverec.models.layers.regularizers import cosine_distance, distance_correlation, euclidean_distance, info_nce
from eliverec.models.layers.rnn import AUGRU, MaskedGRU
from eliverec.models.layers.simhash import SimHashTopK
from eliverec.models.layers.transformer import SequenceTransformer, TransformerBlock

__all__ = [
    "AUGRU",
    "MLP",
    "CoActionUnit",
    "DinAttention",
    "EmbeddingBank",
    "GateUnit",
    "HGNEncoder",
    "MMoE",
    "MaskedGRU",
    "MultiHeadTargetAttention",
    "OrthogonalMap",
    "SequenceTransformer",
    "SimHashTopK",
    "TransformerBlock",
    "cosine_distance",
    "distance_correlation",
    "euclidean_distance",
    "info_nce",
    "masked_max",
    "masked_mean",
    "masked_softmax",
]
