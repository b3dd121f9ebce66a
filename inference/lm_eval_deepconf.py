"""lm-eval model ``falcon_h1r_deepconf``: answers math generation tasks by DeepConf voting.

    lm_eval --model falcon_h1r_deepconf \\
        --model_args pretrained=tiiuae/Falcon-H1R-7B,backend=vllm,mode=online,budget=512,eta=10 \\
        --include_path $(python -c "import falcon_h1r.eval as e; print(e.tasks_dir())") --tasks aime25

(``falcon-h1r eval --deepconf`` selects it.) Each ``generate_until`` request runs one DeepConf search and
returns ``\\boxed{<voted answer>}``, which the math tasks grade like any response. The requests are one
workload (`falcon_h1r.inference.scheduler.answer_all`): on the transformers backend one batch of ``capacity``
rows (default 64) is kept full across questions. Importing this module registers the model with lm-eval.

Prompts: when lm-eval applies the chat template (``--apply_chat_template``) the context is used as is;
otherwise the context is wrapped as one user message with the model's chat template, since DeepConf's
traces are meant to be the model's chat answers. Sampling is DeepConf's (``temperature``, ``top_p`` model
args, paper defaults 0.6 / 0.95), not the task's greedy settings; the task's ``max_gen_toks`` caps the
trace length unless ``max_new_tokens`` is given.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from falcon_h1r import resolve_model
from falcon_h1r.inference.backends import make_generator
from falcon_h1r.inference.deepconf import DeepConfConfig
from falcon_h1r.inference.sampling import SamplingConfig
from falcon_h1r.inference.scheduler import DEFAULT_CAPACITY, answer_all

log = logging.getLogger(__name__)

DEEPCONF_ARGS = {f.name for f in dataclasses.fields(DeepConfConfig)} - {"batch_size"}  # lm-eval owns batch_size
SAMPLING_ARGS = {f.name for f in dataclasses.fields(SamplingConfig)}
EVAL_SEED = 0  # an evaluation samples reproducibly unless told otherwise (`seed=None` draws a fresh seed)


@register_model("falcon_h1r_deepconf")
class DeepConfLM(LM):
    def __init__(
        self,
        pretrained: str | None = None,
        backend: str = "transformers",
        deepconf_batch_size: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        system: str | None = None,
        capacity: int = DEFAULT_CAPACITY,
        batch_size: Any = None,  # lm-eval's; DeepConf batches the traces of one question itself
        max_batch_size: Any = None,
        **options: Any,
    ):
        """DeepConf options (mode, budget, warmup, eta, window, tau, confidence, min_stop_tokens, and
        deepconf_batch_size for DeepConf's batch_size) and sampling options (temperature, top_p, top_k,
        max_new_tokens, seed) take the same defaults as `falcon-h1r deepconf`, except seed (EVAL_SEED).
        ``capacity``: transformers backend, most rows decoding at once across questions."""
        super().__init__()
        unused = sorted(set(options) - DEEPCONF_ARGS - SAMPLING_ARGS)
        if unused:
            log.warning("falcon_h1r_deepconf ignores model args %s", unused)
        self.config = DeepConfConfig.from_options(
            **{k: v for k, v in options.items() if k in DEEPCONF_ARGS}, batch_size=deepconf_batch_size
        )
        sampling = SamplingConfig.from_options(
            **{"seed": EVAL_SEED, **{k: v for k, v in options.items() if k in SAMPLING_ARGS}}
        )
        self.max_new_tokens = sampling.max_new_tokens  # None: each request's max_gen_toks caps its traces
        self.system = system
        self.capacity = int(capacity)
        self.generator = make_generator(
            backend,
            resolve_model(pretrained),
            sampling=sampling,
            device=device,
            dtype=dtype,
            tensor_parallel_size=int(tensor_parallel_size),
            data_parallel_size=int(data_parallel_size),
        )
        self.tokenizer = self.generator.tokenizer
        self._model_name = str(pretrained)
        self._context_is_templated = False
        self.results: list[dict] = []  # per request: answer, tokens, traces, wall time

    # -- chat template hooks used by lm-eval's --apply_chat_template ------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return self._model_name.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.tokenizer.chat_template

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        self._context_is_templated = True
        return self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    # -- requests ----------------------------------------------------------------------------------------
    def _prompt_ids(self, context: str) -> list[int]:
        if self._context_is_templated:
            return self.tokenizer(context, add_special_tokens=False)["input_ids"]
        return self.generator.prompt_ids(context, self.system)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from tqdm import tqdm

        outputs: list[str | None] = [None] * len(requests)
        records: list[dict | None] = [None] * len(requests)  # self.results stays in request order
        by_cap: dict[int | None, list[int]] = {}  # one workload per trace-length cap (a task has one)
        for i, request in enumerate(requests):
            gen_kwargs = request.args[1]
            cap = None
            if self.max_new_tokens is None and isinstance(gen_kwargs, dict) and gen_kwargs.get("max_gen_toks"):
                cap = int(gen_kwargs["max_gen_toks"])
            by_cap.setdefault(cap, []).append(i)
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="DeepConf")
        for cap, indices in by_cap.items():

            def on_result(j: int, result, indices=indices) -> None:
                i = indices[j]
                context, gen_kwargs = requests[i].args
                records[i] = (
                    {"answer": result.answer, "tokens": result.tokens, "traces": len(result.traces),
                     "wall_time": result.wall_time}
                )  # fmt: skip
                outputs[i] = f"\\boxed{{{result.answer}}}" if result.answer is not None else ""
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), outputs[i])
                bar.update(1)

            prompts = [self._prompt_ids(requests[i].args[0]) for i in indices]
            answer_all(
                self.generator, prompts, self.config, capacity=self.capacity, on_result=on_result, max_new_tokens=cap
            )
        bar.close()
        self.results.extend(records)
        return outputs

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(
            "falcon_h1r_deepconf only generates (DeepConf votes over sampled answers); use it with generation "
            "tasks such as aime25 or math500, and a regular model (hf / vllm) for log-likelihood tasks"
        )

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self.loglikelihood(requests, disable_tqdm)
