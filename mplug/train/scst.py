"""Self-critical sequence training (SCST) for captioning: the official caption_mplug_scst.py.

Official loop (AliceMind mPLUG/caption_mplug_scst.py): beam search WITH gradients returns K = beam_size
hypotheses per image; reward r = CIDEr of each against all the image's references; baseline b =
mean reward of the image's K beams; `loss = -mean((beam_score / num_tokens) * (r - b))`, where
beam_score is the beam's length-penalised cumulative log-probability,
`sum(log p) / ((5 + L) / 6) ** 0.6` with L the generated length (EOS included), and num_tokens
the hypothesis length including [CLS] (L + 1). The official script selects the best model on the
Karpathy TEST split every `--eval_steps`; here `train.eval_every` evaluates on `val`
(mplug/train/evaluation.py).

`grad_path` chooses how the gradient of beam_score is obtained:
* `beam` (default, official): backpropagate through `generation.beam_search` itself, decoding in
  the model's current mode (training: dropout active while decoding, as the official script,
  which calls the model under `model.train()`).
* `rescore`: decode the K hypotheses without gradient in eval mode, then score them by one
  teacher-forced decoder pass (in the model's current mode) and apply the same length penalty.
  With dropout off both give the same loss and gradients (tests/train/test_scst.py); with
  dropout on they differ: here the tokens are chosen without dropout and the score is taken
  with one dropout mask. It keeps one decoder pass in the graph instead of max_length steps of
  K beams, so it needs less memory.
`baseline: greedy` (Rennie et al.) uses the reward of the greedy caption instead of the beam mean.

Images for which beam search recorded fewer than K hypotheses (its best beam ended first) take
part with the ones they have: baseline and mean run over the recorded hypotheses only. (The
official code cannot stack such a batch; it does not happen at min_length 8 with real models.)
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

from mplug.data.tokenizer import decode_generated
from mplug.errors import ConfigError

GRAD_PATHS = ("beam", "rescore")
BASELINES = ("beam_mean", "greedy")


@dataclass
class ScstConfig:
    """The YAML `train.scst` mapping."""

    reward: str = "cider"
    baseline: str = "beam_mean"
    beam_size: int = 5
    min_length: int = 8
    max_length: int = 25
    length_penalty: float = 0.6  # GNMT alpha of beam_search, as the official decoder
    grad_path: str = "beam"
    use_cache: bool = True  # beam path: KV cache (official recomputes the prefix each step)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "train.scst") -> "ScstConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown key {where}.{unknown[0]}; known keys: {', '.join(sorted(known))}")
        cfg = cls(**dict(d))
        for key, allowed in (("reward", ("cider",)), ("baseline", BASELINES), ("grad_path", GRAD_PATHS)):
            if getattr(cfg, key) not in allowed:
                raise ConfigError(f"{where}.{key}={getattr(cfg, key)!r}: use one of {', '.join(allowed)}")
        for key in ("beam_size", "max_length"):
            value = getattr(cfg, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{where}.{key}={value!r}: must be an integer >= 1")
        if not isinstance(cfg.min_length, int) or not 0 <= cfg.min_length <= cfg.max_length:
            raise ConfigError(f"{where}.min_length={cfg.min_length!r}: must be an integer in "
                              f"0..max_length ({cfg.max_length})")
        return cfg


def generated_lengths(ids, pad: int):
    """ids (N, T) generated tokens (after [CLS]), padded with `pad` -> (N,) hypothesis lengths.

    A hypothesis ends where beam search recorded it: at an EOS or at max_length. A beam that
    emitted EOS stays alive (official), so a later hypothesis can hold an EOS mid-sequence and
    its score counts the tokens after it; the length is therefore up to the LAST non-pad token
    (= the official `item.numel()`), exact unless the model generated trailing [PAD] tokens."""
    import torch

    n, t = ids.shape
    positions = torch.arange(1, t + 1, device=ids.device).expand(n, t)
    return torch.where(ids != pad, positions, torch.zeros_like(positions)).amax(1)


def length_penalty(lengths, alpha: float):
    """GNMT ((5 + L) / 6) ** alpha, as beam_search divides its running log-probability."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def rescore(model, batch: dict, ids, cfg: ScstConfig):
    """Teacher-forced beam scores: ids (B, K, T) -> (B, K) sum log p / length penalty, with the
    gradient of the current model mode."""
    import torch

    mc = model.cfg
    b, k, t = ids.shape
    flat = ids.reshape(b * k, t)
    seq = torch.cat([torch.full((b * k, 1), mc.bos_token_id, dtype=flat.dtype, device=flat.device),
                     flat], dim=1)  # (BK, T+1): [CLS] hypothesis [SEP] pad...
    n_gen = generated_lengths(flat, mc.text.pad_token_id)  # (BK,)
    positions = torch.arange(t + 1, device=flat.device)[None]
    mask = (positions <= n_gen[:, None]).long()  # [CLS] + the generated tokens
    memory, memory_mask = model.memory(batch)
    memory = memory.repeat_interleave(k, 0)
    memory_mask = memory_mask.repeat_interleave(k, 0)
    labels = seq.masked_fill(mask == 0, -100)
    out = model.text_decoder(seq, mask, memory, memory_mask, labels=labels, reduction="none")
    log_prob = -out.loss.float()  # (BK,) summed over the generated tokens
    return (log_prob / length_penalty(n_gen, cfg.length_penalty)).view(b, k)


def decode_with_grad(model, batch: dict, cfg: ScstConfig):
    """Official path: beam search with autograd on. Returns ids (B, K, T), scores (B, K)."""
    from mplug.models.generation import beam_search

    mc = model.cfg
    memory, memory_mask = model.memory(batch)
    return beam_search(model.text_decoder, memory, memory_mask, bos=mc.bos_token_id,
                       eos=mc.eos_token_id, pad=mc.text.pad_token_id, beam_size=cfg.beam_size,
                       min_length=cfg.min_length, max_length=cfg.max_length,
                       length_penalty=cfg.length_penalty, num_return=cfg.beam_size,
                       use_cache=cfg.use_cache)


def _decode_no_grad(model, batch: dict, cfg: ScstConfig, beams: int):
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ids, _ = model.generate(batch, beam_size=beams, num_return=beams,
                                    min_length=cfg.min_length, max_length=cfg.max_length)
    finally:
        model.train(was_training)
    return ids  # (B, beams, T)


def scst_loss(scores, rewards, valid, num_tokens, baseline=None):
    """scores/rewards/num_tokens (B, K), valid (B, K) bool -> (loss, baseline (B, 1)).

    `-mean((score / num_tokens) * (r - b))` over the recorded hypotheses; b = mean reward of the
    image's recorded beams unless a baseline (B, 1) is given."""
    import torch

    v = valid.float()
    if baseline is None:
        baseline = (rewards * v).sum(1, keepdim=True) / v.sum(1, keepdim=True).clamp(min=1.0)
    adv = (rewards - baseline) * v
    per = torch.where(valid, scores / num_tokens.float(), torch.zeros_like(scores))
    return -(per * adv).sum() / v.sum().clamp(min=1.0), baseline


def scst_step(tokenizer: Any, reward: Callable, scst: Mapping[str, Any]):
    """The recipe's step function: (engine, batch, ctx) -> {"loss", "loss_scst", "reward", ...}.
    `reward(texts, image_ids) -> array (N,)` (mplug.eval.cider_reward.CiderReward)."""
    import torch

    cfg = ScstConfig.from_dict(scst)
    k = cfg.beam_size

    def step(engine, batch, ctx):  # noqa: ARG001 - the loop's step signature
        model = engine.module
        mc = model.cfg
        if cfg.grad_path == "beam":
            ids, scores = decode_with_grad(model, batch, cfg)
        else:
            ids = _decode_no_grad(model, batch, cfg, k)
            scores = rescore(model, batch, ids, cfg)
        b, kk, t = ids.shape
        flat = ids.reshape(b * kk, t)
        n_gen = generated_lengths(flat, mc.text.pad_token_id).view(b, kk)
        valid = n_gen > 0  # (B, K): a recorded hypothesis has at least one token
        texts = decode_generated(tokenizer, flat.tolist())  # the strings evaluation scores
        image_ids = [m["image_id"] for m in batch["meta"] for _ in range(kk)]
        r = torch.as_tensor(reward(texts, image_ids), dtype=torch.float32).to(scores.device).view(b, kk)
        base = None
        if cfg.baseline == "greedy":
            g = _decode_no_grad(model, batch, cfg, 1)[:, 0]
            g_texts = decode_generated(tokenizer, g.tolist())
            base = torch.as_tensor(reward(g_texts, [m["image_id"] for m in batch["meta"]]),
                                   dtype=torch.float32).to(scores.device).view(b, 1)
        loss, base = scst_loss(scores.float(), r, valid, n_gen + 1, base)
        rv = r[valid]
        return {"loss": loss, "loss_scst": loss.detach(),
                "reward": rv.mean().detach() if rv.numel() else r.new_zeros(()),
                "reward_baseline": base.mean().detach(),
                "beams_recorded": valid.float().sum(1).mean().detach()}
    return step
