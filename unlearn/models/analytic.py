"""The `analytic` classifier architecture: a frozen backbone, a seeded random buffer, and a ridge head
learned and unlearned in closed form (after ACIL, Zhuang et al.; forgetting after ACU, `unlearn.methods.acu`).

The network is a frozen backbone, then the buffer layer G (a fixed random projection that is
seeded, followed by ReLU, as in ACIL's `RandomBuffer`), then the analytic head W. The head is
ridge-regularised least squares. Learning and forgetting are closed-form rank-k updates, with
no gradients. A version stores W and R = (XᵀX + γI)⁻¹, both float64. It stores no training data.

Notation. X (N×d) holds the buffered features as rows. Y (N×C) holds one-hot labels.
    (1) features      X = G(backbone(x)) = ReLU(backbone(x) · B), with B frozen and seeded
    (2) objective     min_W ‖Y − XW‖²_F + γ‖W‖²_F
    (3) closed form   R = (XᵀX + γI)⁻¹,  W = R XᵀY
    (4) learn (ACIL Eq. 9–10), batch (X_k, Y_k):
            K = I + X_k R X_kᵀ;   R ← R − R X_kᵀ K⁻¹ X_k R;   W ← W + R X_kᵀ (Y_k − X_k W), with R already updated
    (5) forget (ACU: the exact inverse of (4), by the Woodbury identity), batch (X_u, Y_u):
            S = I − X_u R X_uᵀ;   R′ = R + R X_uᵀ S⁻¹ X_u R;   W′ = W − R′ X_uᵀ (Y_u − X_u W)
    (6) predict       argmax_c (XW)_c, a class with no sample held masked
Both updates are one helper with sign s = +1 (learn) or s = −1 (forget). With U = R Xᵀ and
M = I + s X U, we get G = U M⁻¹ = R′Xᵀ, R′ = R − s G Uᵀ and W′ = W + s G (Y − X W). Each update
costs O(d²k + k³) time and O(d²) memory, whatever N is.

`features` and `inputs`. Every method takes the classifier's *inputs*. When the classifier
holds its own `backbone` (an `nn.Module`, frozen; the classifier keeps a float64 copy), the inputs
are raw inputs and pass through that backbone first. Without a backbone, the inputs are the backbone's
output features; the digits and synthetic zoo models use raw pixels or columns as those features.

Exactness needs bit-identical features. The same inputs, buffer, γ and labels must be used as
when the samples were learned. Each sample's features are computed from its inputs alone, so
they do not depend on which other samples share its batch.

The ledger. Forgetting a sample twice leaves S positive definite and corrupts R without any
error, so every version keeps a ledger of what it holds. The ledger is a multiset of 64-bit
keys taken from the sha256 of each (input, label) pair. It holds no data. A forget request is
checked against the ledger before R is touched. The classifier also keeps the hashed ids of
forgotten samples, so that a request repeated under the same id is refused by id.

Drift. The recursion accumulates rounding error. The check is a random probe: a version keeps
P (d×m), V = ΦP with Φ = XᵀX + γI, and T = PᵀXᵀY. V and T are updated additively and exactly
with each batch. The residuals ‖RV − P‖/‖P‖ (R against Φ⁻¹) and ‖VᵀW − T‖/‖T‖ (the normal
equations) cost O(d²m). The metadata (its `acu` block) recommends re-anchoring once a residual
passes `drift_tol`, or after `reanchor_every` requests; re-anchoring is an operator action of the
ACU method (`unlearn.methods.acu.reanchor_artifact`).

As an architecture module (`unlearn.models.ARCHS["analytic"]`): `train` is the closed-form fit (3)
on the given samples, so an exact retrain is the fit on the kept samples; `load` gives log-probabilities.
An artifact's backbone (`unlearn.json["backbone"]`) is "identity", or a frozen network saved in its
`backbone/` folder: "hf-image" (a Hugging Face image classifier's head input, e.g. ViT's CLS state) or
"mlp" / "cnn" (`ArchFeatures`), as registration's analytic-head conversion writes it
(`ClassifierFamily.prepare`). Every version (ACU's, a retrain's) carries the folder unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unlearn.artifacts import load_tensors, read_meta, save_tensors, write_meta
from unlearn.contracts import Progress, no_progress
from unlearn.models import Predictor

DTYPE = torch.float64
LEDGER = "ledger.safetensors"
BACKBONE = "backbone"  # folder of a non-identity backbone inside an artifact (a `save_pretrained` folder)
CHUNK_ROWS = 8192  # rows expanded at a time when accumulating XᵀX (a 100k×2048 X is 1.6 GB)
MAX_RANK = 4096  # a batch larger than this is applied as several exact updates, since the k³ term would dominate
PROBES = 4
DRIFT_TOL = 1e-9  # relative probe residual that triggers the re-anchor recommendation
REANCHOR_EVERY = 1000  # requests between re-anchors, recommended even when the residual looks fine
MASKED_LOGIT = -1e4  # logit of a class with no samples: a cleared column of W scores 0, which could still win
REANCHOR_NEEDS = ("every training sample this version still holds (inputs and labels), i.e. the ledger's "
                  "samples: re-anchoring revisits historical data, which ACU otherwise never does")


class NotHeldError(ValueError):
    """A forget request names a sample the version does not hold: never learned, or already forgotten."""


def sample_keys(inputs: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> list[int]:
    """Ledger keys, one per sample: the first 8 bytes of sha256(float64 input row ‖ int64 label)."""
    rows = np.ascontiguousarray(_numpy(inputs), dtype=np.float64).reshape(len(labels), -1)
    labs = np.asarray(_numpy(labels), dtype=np.int64)
    return [int.from_bytes(hashlib.sha256(r.tobytes() + lab.tobytes()).digest()[:8], "little", signed=True)
            for r, lab in zip(rows, labs, strict=True)]


def id_keys(ids: Iterable[str]) -> list[int]:
    return [int.from_bytes(hashlib.sha256(f"acu-id:{s}".encode()).digest()[:8], "little", signed=True)
            for s in ids]


def random_buffer(in_features: int, buffer_size: int, seed: int) -> torch.Tensor:
    """B (in×d) with nn.Linear's default init, U(−1/√in, 1/√in), drawn on the CPU so that a seed gives
    the same buffer on every device."""
    gen = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(in_features)
    return (torch.rand(in_features, buffer_size, generator=gen, dtype=DTYPE) * 2 - 1) * bound


def _numpy(a: np.ndarray | torch.Tensor) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


class AnalyticClassifier:
    """Frozen backbone → random buffer → ridge head, with exact closed-form learn and forget."""

    def __init__(self, in_features: int, num_classes: int, buffer_size: int = 1024, gamma: float = 1.0,
                 seed: int = 0, *, backbone: nn.Module | None = None, device: str = "cpu") -> None:
        self.in_features, self.num_classes = in_features, num_classes
        self.buffer_size, self.gamma, self.seed = buffer_size, float(gamma), seed
        self.device = torch.device(device)
        # The backbone runs in float64: float32 GEMMs round differently with the batch's shape, so a sample's
        # features would depend on its batch, and the forget update would miss the learned ones by ~1e-7.
        self.backbone = (copy.deepcopy(backbone).to(self.device, DTYPE).eval().requires_grad_(False)
                         if backbone is not None else None)
        self.buffer = random_buffer(in_features, buffer_size, seed).to(self.device)
        gen = torch.Generator().manual_seed(seed + 1)
        self.probe = torch.randn(buffer_size, PROBES, generator=gen, dtype=DTYPE).to(self.device)
        self.forgotten: set[int] = set()  # hashed ids of samples forgotten by id (see `forget`)
        self._reset()

    def _reset(self) -> None:
        """The empty model (step 3 of the paper): R₀ = I/γ, W₀ = 0, nothing held."""
        d, c = self.buffer_size, self.num_classes
        self.R = torch.eye(d, dtype=DTYPE, device=self.device) / self.gamma
        self.weight = torch.zeros(d, c, dtype=DTYPE, device=self.device)
        self.probe_image = self.gamma * self.probe.clone()  # V = ΦP, with Φ₀ = γI
        self.probe_target = torch.zeros(PROBES, c, dtype=DTYPE, device=self.device)  # T = PᵀXᵀY
        self.class_counts = torch.zeros(c, dtype=torch.int64, device=self.device)
        self.ledger: Counter[int] = Counter()
        self.requests = 0  # learn and forget calls since the last fit

    # -- features ---------------------------------------------------------------------------
    @torch.no_grad()
    def expand(self, inputs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(1): the buffered features X, float64, one row per input."""
        x = torch.as_tensor(inputs, device=self.device).to(DTYPE)
        if self.backbone is not None:
            x = self.backbone(x)
        return torch.relu(x.reshape(len(x), -1) @ self.buffer)

    def _targets(self, labels: np.ndarray | torch.Tensor) -> torch.Tensor:
        y = torch.as_tensor(_numpy(labels).astype(np.int64), device=self.device)
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes})")
        return nn.functional.one_hot(y, self.num_classes).to(DTYPE)

    # -- training and the two recursive updates --------------------------------------------------
    def fit(self, inputs: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> AnalyticClassifier:
        """(3): the closed-form ridge solution on exactly these samples. It forgets everything held before."""
        self._reset()
        self.forgotten.clear()
        d = self.buffer_size
        phi = self.gamma * torch.eye(d, dtype=DTYPE, device=self.device)  # Φ = XᵀX + γI
        q = torch.zeros(d, self.num_classes, dtype=DTYPE, device=self.device)  # Q = XᵀY
        for i in range(0, len(labels), CHUNK_ROWS):
            x, y = self.expand(inputs[i:i + CHUNK_ROWS]), self._targets(labels[i:i + CHUNK_ROWS])
            phi.addmm_(x.T, x)
            q.addmm_(x.T, y)
        chol = torch.linalg.cholesky(phi)
        self.R = torch.cholesky_inverse(chol)
        self.weight = torch.cholesky_solve(q, chol)  # W = Φ⁻¹Q, solved rather than R·Q for accuracy
        self.probe_image = phi @ self.probe
        self.probe_target = self.probe.T @ q
        self._hold(inputs, labels, +1)
        return self

    def learn(self, inputs: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
              ids: Sequence[str] | None = None) -> AnalyticClassifier:
        """(4): add samples to what the head has learned, without revisiting anything it learned before."""
        x, y = self.expand(inputs), self._targets(labels)
        self.R, self.weight, self.probe_image, self.probe_target = self._woodbury(x, y, +1)
        self._hold(inputs, labels, +1)
        if ids is not None:
            self.forgotten.difference_update(id_keys(ids))
        self.requests += 1
        return self

    def forget(self, inputs: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
               ids: Sequence[str] | None = None) -> AnalyticClassifier:
        """(5): remove samples the head has learned, as one update of rank k = len(labels).

        The request is refused with `NotHeldError` before R changes if any sample is not held:
        never learned, already forgotten (by content, or by id when `ids` name the samples),
        or named twice in the same request."""
        if ids is not None:
            self._check_ids(ids, len(labels))
        self._check_held(inputs, labels)
        x, y = self.expand(inputs), self._targets(labels)
        self.R, self.weight, self.probe_image, self.probe_target = self._woodbury(x, y, -1)
        self._hold(inputs, labels, -1)
        if ids is not None:
            self.forgotten.update(id_keys(ids))
        self.requests += 1
        return self

    def _woodbury(self, x: torch.Tensor, y: torch.Tensor, sign: int):
        """(4) for sign=+1 and (5) for sign=−1. R is updated in place, because allocating a fresh d×d
        matrix costs more than the update itself. Every check comes before the first write, and a
        batch of several pieces works on a copy, so a refused request leaves the state unchanged."""
        if len(x) > self.R.shape[0]:
            return self._gram_update(x, y, sign)
        starts = range(0, len(x), MAX_RANK)
        R = self.R if len(starts) == 1 else self.R.clone()
        W, V, T = self.weight, self.probe_image, self.probe_target
        for i in starts:
            xk, yk = x[i:i + MAX_RANK], y[i:i + MAX_RANK]
            U = R @ xk.T  # R Xᵀ, d×k; the order R(XᵀK)(XR) of ACIL's code would cost O(d³)
            M = torch.eye(len(xk), dtype=DTYPE, device=self.device) + sign * (xk @ U)  # K (learn) or S (forget)
            M = (M + M.T) / 2
            chol, info = torch.linalg.cholesky_ex(M)
            if int(info) != 0:
                # S = (I + X_u R′ X_uᵀ)⁻¹ is positive definite for held samples; failing means not held.
                raise NotHeldError("the forget update is not positive definite: the batch holds samples "
                                   "this version never learned (R was left unchanged)")
            G = torch.cholesky_solve(U.T, chol).T  # U M⁻¹ = R′Xᵀ
            R.addmm_(G, U.T, alpha=-sign)  # R′ = R ∓ R Xᵀ M⁻¹ X R
            W = W + sign * (G @ (yk - xk @ W))  # W′ = W ± R′Xᵀ(Y − XW)
            xp = xk @ self.probe
            V = V + sign * (xk.T @ xp)  # Φ′P = ΦP ± XᵀXP
            T = T + sign * (xp.T @ yk)  # PᵀQ′ = PᵀQ ± PᵀXᵀY
        return R, W, V, T

    def _gram_update(self, x: torch.Tensor, y: torch.Tensor, sign: int):
        """(4)/(5) for a batch of more samples than features (k > d): the same closed form through the
        d×d matrices it comes from, R′ = (R⁻¹ ± XᵀX)⁻¹ and W′ = R′(R⁻¹W ± XᵀY) (W = R·ΦᵀY, so R⁻¹W is the
        accumulated ΦᵀY). It costs O(k·d² + d³) where Woodbury costs O(k·d² + k²·d + k³): for a million
        samples and d = 256, seconds instead of hours. Exact in float64 like (4)/(5); a forget whose
        R′⁻¹ is not positive definite was not held, and is refused before anything changes."""
        d = self.R.shape[0]
        gram = torch.zeros(d, d, dtype=DTYPE, device=self.device)
        xty = torch.zeros_like(self.weight)
        V, T = self.probe_image.clone(), self.probe_target.clone()
        for i in range(0, len(x), MAX_RANK):  # XᵀX, XᵀY and the probe's terms, a slice at a time
            xk, yk = x[i:i + MAX_RANK], y[i:i + MAX_RANK]
            gram.addmm_(xk.T, xk)
            xty.addmm_(xk.T, yk)
            xp = xk @ self.probe
            V += sign * (xk.T @ xp)  # Φ′P = ΦP ± XᵀXP
            T += sign * (xp.T @ yk)  # PᵀQ′ = PᵀQ ± PᵀXᵀY
        r_inv = torch.cholesky_inverse(torch.linalg.cholesky((self.R + self.R.T) / 2))  # R⁻¹ = ΦᵀΦ + γI
        a = r_inv + sign * gram
        chol, info = torch.linalg.cholesky_ex((a + a.T) / 2)
        if int(info) != 0:
            raise NotHeldError("the forget update is not positive definite: the batch holds samples "
                               "this version never learned (R was left unchanged)")
        R = torch.cholesky_inverse(chol)
        W = R @ (r_inv @ self.weight + sign * xty)
        return R, W, V, T

    # -- the ledger -----------------------------------------------------------------------------
    def _hold(self, inputs: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, sign: int) -> None:
        keys = sample_keys(inputs, labels)
        counts = Counter(keys)
        if sign > 0:
            self.ledger.update(counts)
        else:
            self.ledger.subtract(counts)
            for k in counts:
                if self.ledger[k] <= 0:
                    del self.ledger[k]
        binc = torch.bincount(torch.as_tensor(_numpy(labels).astype(np.int64)), minlength=self.num_classes)
        self.class_counts = self.class_counts + sign * binc.to(self.device)

    def _check_held(self, inputs: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> None:
        keys = sample_keys(inputs, labels)
        wanted = Counter(keys)
        missing = [i for i, k in enumerate(keys) if self.ledger[k] < wanted[k]]
        if missing:
            raise NotHeldError(f"{len(missing)} of {len(labels)} samples are not held by this version "
                               f"(never learned, already forgotten, or named twice; first at position "
                               f"{missing[0]}); R was left unchanged")

    def _check_ids(self, ids: Sequence[str], n: int) -> None:
        if len(ids) != n:
            raise ValueError(f"{len(ids)} ids for {n} samples")
        if len(set(ids)) != len(ids):
            raise NotHeldError("the request names the same sample id twice; R was left unchanged")
        again = [s for s, k in zip(ids, id_keys(ids), strict=True) if k in self.forgotten]
        if again:
            raise NotHeldError(f"sample {again[0]!r} (and {len(again) - 1} more) was already forgotten "
                               "by this model lineage; R was left unchanged")

    @property
    def held(self) -> int:
        return sum(self.ledger.values())

    # -- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, inputs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(6): f(x)·W. A class with no sample held is masked, because its column of W is exactly 0 and
        could still win the argmax when every other logit is negative."""
        out = torch.cat([self.expand(inputs[i:i + CHUNK_ROWS]) @ self.weight
                         for i in range(0, len(inputs), CHUNK_ROWS)]) if len(inputs) else \
            torch.zeros(0, self.num_classes, dtype=DTYPE, device=self.device)
        return out.masked_fill(self.class_counts == 0, MASKED_LOGIT)

    def predict(self, inputs: np.ndarray | torch.Tensor) -> torch.Tensor:
        return self.logits(inputs).argmax(1)

    # -- drift ------------------------------------------------------------------------------------
    @torch.no_grad()
    def residual(self) -> dict[str, float]:
        """Random-probe residuals: `r` = ‖RΦP − P‖/‖P‖ (R against Φ⁻¹), `w` = ‖PᵀΦW − PᵀQ‖/‖PᵀQ‖ (normal equations)."""
        r = torch.linalg.norm(self.R @ self.probe_image - self.probe) / torch.linalg.norm(self.probe)
        t = torch.linalg.norm(self.probe_target)
        w = torch.linalg.norm(self.probe_image.T @ self.weight - self.probe_target) / t if t > 0 else t
        return {"r": float(r), "w": float(w)}


class ArchFeatures(nn.Module):
    """A frozen backbone from one of this project's networks: the `cnn`'s extractor (its fc1 embedding,
    LAF's g) or the `mlp` up to its last linear layer; inputs as the network takes them (flattened)."""

    def __init__(self, model: nn.Module, meta: dict[str, Any]) -> None:
        super().__init__()
        self.model, self.meta, self.kind = model, dict(meta), str(meta["arch"])
        self.body = model.extractor if hasattr(model, "extractor") else model.net[:-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.to(next(self.model.parameters()).dtype))

    def save_backbone(self, folder: Path) -> None:
        """The network as its own artifact, in float32 (exact for weights that came from float32)."""
        from unlearn.models import get_arch

        get_arch(self.kind).save(copy.deepcopy(self.model).float(), self.meta, Path(folder))


BACKBONES = ("identity", "hf-image", "mlp", "cnn")  # what `unlearn.json["backbone"]` may name


def load_backbone(kind: str, folder: Path, meta: dict[str, Any], device: str = "cpu") -> nn.Module:
    """The frozen backbone `kind` saved in `folder`: an hf-image folder's features (its head's input,
    `unlearn.models.hf_image.features`) or a project network's (`ArchFeatures`). ValueError otherwise."""
    if kind == "hf-image":
        from unlearn.models.hf_image import features

        return features(folder, meta, device)
    if kind in ("mlp", "cnn"):
        from unlearn.models import get_arch

        model, own = get_arch(kind).load_module(folder, device)
        return ArchFeatures(model, own)
    raise ValueError(f"analytic artifacts hold a backbone of {', '.join(BACKBONES)}, not {kind!r}")


def from_meta(meta: dict[str, Any], device: str = "cpu", model_dir: Path | None = None) -> AnalyticClassifier:
    """The empty classifier an artifact's `unlearn.json` describes. `meta["backbone"]` is "identity" (the
    inputs are the features) or a frozen network saved in the `backbone/` folder of `model_dir`
    (`load_backbone`). Raises ValueError for another backbone, or one without its folder."""
    kind = meta.get("backbone", "identity")
    backbone = None
    if kind != "identity":
        folder = Path(model_dir or "") / BACKBONE
        if model_dir is None or not folder.is_dir():
            raise ValueError(f"the analytic head's {kind} backbone is missing: no {BACKBONE}/ folder in {model_dir}")
        backbone = load_backbone(kind, folder, meta, device)
    return AnalyticClassifier(meta["in_features"], meta["num_classes"], buffer_size=meta["buffer_size"],
                              gamma=meta["gamma"], seed=meta["seed"], backbone=backbone, device=device)


def drift_state(clf: AnalyticClassifier, meta: dict[str, Any]) -> dict[str, Any]:
    """The `acu` block of unlearn.json: request counter, residuals, and the re-anchor recommendation."""
    previous = meta.get("acu", {})
    tol = previous.get("drift_tol", DRIFT_TOL)
    every = previous.get("reanchor_every", REANCHOR_EVERY)
    res = clf.residual()
    reasons = [f"probe residual {k}={v:.3g} > {tol:g}" for k, v in res.items() if not v <= tol]
    if clf.requests >= every:
        reasons.append(f"{clf.requests} requests since the last anchor (every {every})")
    return {"requests_since_anchor": clf.requests, "residual_r": res["r"], "residual_w": res["w"],
            "drift_tol": tol, "reanchor_every": every, "reanchor_recommended": bool(reasons),
            "reanchor_reason": "; ".join(reasons) or None, "reanchor_needs": REANCHOR_NEEDS,
            "held": clf.held}


def save(clf: AnalyticClassifier, meta: dict[str, Any], out_dir: Path) -> None:
    """Write W, R, the probe state and the ledger as safetensors, and `meta` with its drift block. A held
    backbone is written to `backbone/` by its own `save_backbone` (ValueError for one without it)."""
    if clf.backbone is not None:
        if not hasattr(clf.backbone, "save_backbone"):
            raise ValueError("this analytic classifier's backbone cannot be saved (it has no save_backbone)")
        clf.backbone.save_backbone(Path(out_dir) / BACKBONE)
    save_tensors(out_dir, {"buffer": clf.buffer, "weight": clf.weight, "R": clf.R,
                           "class_counts": clf.class_counts, "probe": clf.probe,
                           "probe_image": clf.probe_image, "probe_target": clf.probe_target})
    held = sorted(clf.ledger.elements())
    save_tensors(out_dir, {"held": torch.tensor(held, dtype=torch.int64),
                           "forgotten": torch.tensor(sorted(clf.forgotten), dtype=torch.int64)}, LEDGER)
    write_meta(out_dir, {**meta, "acu": drift_state(clf, meta)})


def load_classifier(model_dir: Path, device: str = "cpu") -> tuple[AnalyticClassifier, dict[str, Any]]:
    """The classifier an artifact holds, ledger included, and its metadata. ValueError when the stored
    buffer is not the one its seed gives."""
    meta = read_meta(model_dir)
    clf = from_meta(meta, device, model_dir)
    t = load_tensors(model_dir, device=device)
    if not torch.equal(t["buffer"], clf.buffer):
        raise ValueError(f"{model_dir}: stored buffer differs from the one seed {meta['seed']} gives")
    clf.weight, clf.R, clf.class_counts = t["weight"], t["R"], t["class_counts"]
    clf.probe, clf.probe_image, clf.probe_target = t["probe"], t["probe_image"], t["probe_target"]
    ledger = load_tensors(model_dir, LEDGER)
    clf.ledger = Counter(ledger["held"].tolist())
    clf.forgotten = set(ledger["forgotten"].tolist())
    clf.requests = meta.get("acu", {}).get("requests_since_anchor", 0)
    return clf, meta


def train(meta: dict[str, Any], X: np.ndarray, y: np.ndarray, out_dir: Path, *, device: str = "cpu",
          progress: Progress = no_progress) -> None:
    """Closed-form fit: for this architecture the exact retrain *is* the fit on the kept samples. A
    non-identity backbone is the frozen one of the version retrained from (`meta["parent_dir"]`, which
    `ClassifierFamily.retrain` sets), carried into `out_dir` unchanged."""
    meta = {k: v for k, v in meta.items() if k != "acu"}
    meta.setdefault("backbone", "identity")
    parent = meta.get("parent_dir")
    clf = from_meta(meta, device, Path(parent) if parent else None).fit(X, y)
    progress(1.0, f"closed-form fit on {len(y)} samples")
    save(clf, meta, out_dir)


def load(model_dir: Path, device: str = "cpu") -> Predictor:
    """The architecture contract's predictor: inputs (N, in_features) to log-probabilities (N, C), float64."""
    clf, _ = load_classifier(model_dir, device)

    def predict(X: np.ndarray) -> np.ndarray:
        return torch.log_softmax(clf.logits(X), dim=1).cpu().numpy()
    return predict
