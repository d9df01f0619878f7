"""The evaluation classifier as a cache entry: its key, and bytes that are checked before they are trusted.

Training the evaluation classifier is most of a small training job (25-31 s of a 34-42 s 28x28 job on
CPU), and it depends only on the real training split, the job seed, the classifier recipe and the device
it trains on. `ClassifierKey` names exactly those inputs; two jobs with equal keys train bit-identical
classifiers, so the second may reuse the first's. The storage side (where entries live, per tenant) is the
worker's (`worker.pipelines.classifier_cache`); this module only turns a classifier into bytes and back.

An entry is never trusted: `decode` checks a sha256 over the whole payload, that the key stored inside it
equals the key asked for, and that the state loads strictly into the recipe's architecture. Anything else
raises `CacheEntryInvalid`, and the caller retrains (and overwrites the entry).

`SPLIT_RECIPE` (training.datasets) names how the train / validation / test split is cut. The dataset
fingerprint already covers the splits' bytes, so a changed split gives another key anyway; the field is
there so a change to the split recipe also retires old entries explicitly.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from training.classifier import CLASSIFIER_RECIPE, build_classifier, classifier_architecture
from training.datasets import SPLIT_RECIPE
from training.evaluate import EVALUATION_RECIPE

ENTRY_FORMAT = 1
_MAGIC = b"synthjobs-classifier-cache\n"


class CacheEntryInvalid(Exception):
    """A cache entry that is corrupt, truncated, or made for another key: ignored, never trusted."""


@dataclass(frozen=True)
class ClassifierKey:
    """Everything the evaluation classifier of a job depends on (see the module doc)."""

    fingerprint: str  # training.data.fingerprint: image shape, class names, both splits' exact bytes
    seed: int  # the job seed (the classifier's own seed is derived from it, stream CLASSIFIER)
    image_shape: tuple[int, int, int]
    num_classes: int
    device_type: str  # "cpu" or "cuda": the same recipe trains other weights on another device
    classifier_recipe: int = CLASSIFIER_RECIPE
    evaluation_recipe: int = EVALUATION_RECIPE
    split_recipe: str = SPLIT_RECIPE
    torch_version: str = field(default_factory=lambda: torch.__version__)
    entry_format: int = ENTRY_FORMAT

    def fields(self) -> dict[str, object]:
        """The key as plain JSON values (what an entry stores and is compared by)."""
        values = asdict(self)
        values["image_shape"] = list(self.image_shape)
        return values

    def digest(self) -> str:
        """A sha256 hex digest of the key: the entry's file name."""
        return hashlib.sha256(json.dumps(self.fields(), sort_keys=True).encode()).hexdigest()


def encode(classifier: nn.Module, key: ClassifierKey) -> bytes:
    """The entry for `classifier` trained under `key`: magic, sha256 of the payload, the payload."""
    buffer = io.BytesIO()
    state = {k: v.detach().to("cpu", copy=True) for k, v in classifier.state_dict().items()}
    payload = {
        "key": json.dumps(key.fields(), sort_keys=True),
        "architecture": getattr(classifier, "architecture", "mlp"),
        "state": state,
    }
    torch.save(payload, buffer)
    body = buffer.getvalue()
    return _MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def decode(blob: bytes, key: ClassifierKey, device: str | torch.device = "cpu") -> nn.Module:
    """The classifier stored in `blob`, in eval mode on `device`, if `blob` is a sound entry for `key`.

    Raises:
        CacheEntryInvalid: a wrong header or checksum, a payload that does not load, another key, or a
            state that does not fit the recipe's architecture.
    """
    if not blob.startswith(_MAGIC):
        raise CacheEntryInvalid("not a classifier cache entry")
    digest, sep, body = blob[len(_MAGIC) :].partition(b"\n")
    if not sep or hashlib.sha256(body).hexdigest().encode() != digest:
        raise CacheEntryInvalid("checksum mismatch (corrupt or truncated entry)")
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable payload is just a miss
        raise CacheEntryInvalid(f"unreadable payload: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("key") != json.dumps(key.fields(), sort_keys=True):
        raise CacheEntryInvalid("the entry was made for another key")
    architecture = classifier_architecture(key.image_shape)
    if payload.get("architecture") != architecture:
        stored = payload.get("architecture")
        raise CacheEntryInvalid(f"architecture {stored!r}, the recipe's is {architecture}")
    classifier = build_classifier(key.image_shape, key.num_classes, architecture=architecture)
    try:
        classifier.load_state_dict(payload["state"], strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CacheEntryInvalid(f"state does not fit the recipe: {exc}") from exc
    return classifier.to(device).eval()
