"""An lm-eval `LM` over any in-memory causal model that returns logits: registered as "ssm_bench".

Why not lm-eval's HFLM: its batched generation left-pads, which an SSM cannot ignore (pad tokens
go through the state), and it wants a transformers model, which the in-repo MambaLM is not. This
class is the small part of HFLM that we need, with the same rules under HFLM's defaults, for both
architectures (tests/test_evals_lm_eval.py checks it against HFLM request by request):

- tokens: as HFLM with add_bos_token=None, the tokenizer's own default decides special tokens, so
  a tokenizer that prepends BOS (Llama 3, Mistral) gets it on every context, unless the text
  already starts with it; an empty context is the BOS token (EOS when there is none).
- loglikelihood: context + continuation, truncated on the left to max_length + 1 tokens; the
  continuation's log-probs come from the positions that predict it (as HFLM's causal path).
  Requests are sorted longest first and right-padded into batches; right padding cannot change
  earlier positions of a causal model, so batching does not change the scores.
- loglikelihood_rolling: lm-eval's disjoint rolling windows, scored as above.
- generate_until: greedy. The in-repo Mamba decodes row by row with its constant-size SSM cache
  (`prefill` + `step`); transformers models use `generate` on left-padded batches with an
  attention mask. Output is cut at the first stop string.

Models: `models.mamba.MambaLM`, `models.hf.SsmBenchMambaForCausalLM` (unwrapped to its MambaLM)
or any transformers causal LM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import has_bos_prefix, resolve_max_length
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from models.mamba import MambaLM


@register_model("ssm_bench")
class TorchLM(TemplateLM):
    backend = "causal"

    def __init__(self, model, tokenizer, batch_size: int = 8, max_length: int | None = None,
                 max_gen_toks: int = 256, add_bos_token: bool | None = None):
        """add_bos_token, max_length: HFLM's arguments, with its defaults: None leaves BOS to the
        tokenizer, and takes the length from the model's config (n_positions,
        max_position_embeddings, n_ctx), else the tokenizer's model_max_length, else 2048."""
        super().__init__()
        self.add_bos_token = add_bos_token
        if max_length is None:
            max_length = resolve_max_length(getattr(model, "config", None), tokenizer)
        if hasattr(model, "mamba") and isinstance(model.mamba, MambaLM):
            model = model.mamba  # SsmBenchMambaForCausalLM: use the MambaLM (and its cache) directly
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        self.max_gen_toks = int(max_gen_toks)
        self.is_mamba = isinstance(model, MambaLM)
        self._device = next(model.parameters()).device
        assert tokenizer.eos_token_id is not None, "the tokenizer needs an eos token (end of text)"

    # ----------------------------------------------------------------------------- tokens

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def tokenizer_name(self) -> str:
        return type(self.tokenizer).__name__

    @property
    def prefix_token_id(self) -> int:
        """What an empty context is conditioned on, and the rolling windows' first token (HFLM's)."""
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.eot_token_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """HFLM's tok_encode: an explicit flag wins, then add_bos_token, then the tokenizer's default;
        a string that already starts with the prefix token's text gets no second one."""
        flag = add_special_tokens if add_special_tokens is not None else self.add_bos_token
        if add_special_tokens is None and has_bos_prefix(string, self.tokenizer.decode(self.prefix_token_id)):
            flag = False
        return self.tokenizer.encode(string, **({} if flag is None else {"add_special_tokens": flag}))

    def _encode_prompt(self, string: str) -> list[int]:
        """A generation prompt as HFLM's tok_batch_encode encodes it (its BOS test reads bos_token)."""
        flag = self.add_bos_token
        if has_bos_prefix(string, getattr(self.tokenizer, "bos_token", None)):
            flag = False
        return self.tokenizer.encode(string, **({} if flag is None else {"add_special_tokens": flag}))

    def tok_decode(self, tokens) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    # ----------------------------------------------------------------------------- forward

    @torch.no_grad()
    def _logits(self, input_ids: torch.Tensor, keep: int = 0) -> torch.Tensor:
        """(b, l) -> float32 logits (b, l, V), or of the last `keep` positions (b, keep, V): with a
        65k vocabulary the logits of a few-shot prompt's every position would be gigabytes."""
        out = self.model(input_ids, logits_to_keep=keep) if keep else self.model(input_ids)
        return (out if torch.is_tensor(out) else out.logits).float()

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """requests: [((context, continuation), context_ids, continuation_ids)] -> [(logprob, is_greedy)]."""
        # Each request's model input: all but the last token, at most max_length tokens.
        items = []
        for i, (_, ctx, cont) in enumerate(requests):
            tokens = (ctx + cont)[-(self.max_length + 1):]
            items.append((i, tokens[:-1], cont))
        items.sort(key=lambda item: -len(item[1]))  # longest first: similar lengths share a batch
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eot_token_id
        for start in range(0, len(items), self.batch_size):
            batch = items[start:start + self.batch_size]
            width = len(batch[0][1])
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            for row, (_, inp, _) in enumerate(batch):
                ids[row, :len(inp)] = torch.tensor(inp)  # right padding
            # Only positions that predict a continuation token are scored: keep the last `keep`.
            keep = width - min(len(inp) - len(cont) for _, inp, cont in batch)
            logits = self._logits(ids.to(self.device), keep).cpu()  # (b, keep, V)
            for row, (i, inp, cont) in enumerate(batch):
                # Positions len(inp)-len(cont) .. len(inp)-1 predict the continuation tokens.
                start = len(inp) - len(cont) - (width - keep)
                scored = F.log_softmax(logits[row, start:start + len(cont)], dim=-1)  # (len(cont), V)
                target = torch.tensor(cont)
                greedy = bool((scored.argmax(-1) == target).all())
                results[i] = (float(scored.gather(-1, target[:, None]).sum()), greedy)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        out = []
        for (text,) in [req.args for req in requests]:
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                self.tok_encode(text), prefix_token=self.prefix_token_id, max_seq_len=self.max_length,
                context_len=1)]
            scores = self._loglikelihood_tokens([(None, ctx, cont) for ctx, cont in windows])
            out.append(sum(logprob for logprob, _ in scores))
        return out

    # ----------------------------------------------------------------------------- generation

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        for context, gen_kwargs in [req.args for req in requests]:
            kwargs = dict(gen_kwargs)
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
            if kwargs.get("do_sample"):
                raise ValueError("ssm_bench LM decodes greedily only; the task asked for do_sample=True")
            ids = self._encode_prompt(context)[-max(1, self.max_length - max_new):]
            out.append((ids, until, max_new))
        return [self._cut(text, until) for text, (_, until, _) in zip(self._generate_all(out), out)]

    def _generate_all(self, jobs) -> list[str]:
        if self.is_mamba:
            return [self._mamba_generate(ids, until, max_new) for ids, until, max_new in jobs]
        # Batch only jobs with the same stop strings and length limit (one task's requests).
        texts: list[str | None] = [None] * len(jobs)
        groups: dict = {}
        for i, (_, until, max_new) in enumerate(jobs):
            groups.setdefault((tuple(until), max_new), []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                for i, text in zip(chunk, self._hf_generate([jobs[i] for i in chunk])):
                    texts[i] = text
        return texts

    @torch.inference_mode()
    def _mamba_generate(self, ids: list[int], until: list[str], max_new: int) -> str:
        """Greedy decode with the SSM cache; stops at eos or as soon as a stop string appears."""
        logits, cache = self.model.prefill(torch.tensor([ids], device=self.device))
        new: list[int] = []
        for _ in range(max_new):
            token = int(logits[0].argmax())
            if token == self.eot_token_id:
                break
            new.append(token)
            if until and any(s in self.tok_decode(new) for s in until):
                break
            logits = self.model.step(torch.tensor([token], device=self.device), cache)
        return self.tok_decode(new)

    @torch.inference_mode()
    def _hf_generate(self, jobs) -> list[str]:
        """A batch through transformers' generate: left padding plus attention mask."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eot_token_id
        width = max(len(ids) for ids, _, _ in jobs)
        input_ids = torch.full((len(jobs), width), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, (ids, _, _) in enumerate(jobs):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            mask[row, width - len(ids):] = 1
        until = sorted({s for _, stops, _ in jobs for s in stops})
        generated = self.model.generate(
            input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device), do_sample=False,
            max_new_tokens=max(m for _, _, m in jobs), pad_token_id=pad, eos_token_id=self.eot_token_id,
            **({"stop_strings": until, "tokenizer": self.tokenizer} if until else {}),
        )
        return [self.tok_decode(row[width:width + max_new].tolist())
                for row, (_, _, max_new) in zip(generated.cpu(), jobs)]

    @staticmethod
    def _cut(text: str, until: list[str]) -> str:
        for stop in until:
            if stop:
                text = text.split(stop)[0]
        return text
