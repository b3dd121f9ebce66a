"""Usage snippets shown on the model card.

The transformers snippet is not just prose: `validate.load_check_script` runs this exact text (with the local
folder as `model_id`) in a Python that cannot import `falcon_h1r`, before anything is uploaded.
"""

from __future__ import annotations

import json

from falcon_h1r import RECOMMENDED_SAMPLING  # also read from here by card / stage / validate

EXAMPLE_QUESTION = "What is 17 + 25?"

TRANSFORMERS_SNIPPET = """\
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = {model_id_q}
tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained(model_id, trust_remote_code=True, dtype="auto", device_map="auto")

messages = [{{"role": "user", "content": {question_q}}}]
inputs = tokenizer.apply_chat_template(
    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
).to(model.device)
output = model.generate(**inputs, max_new_tokens={max_new_tokens})  # sampling defaults: generation_config.json
print(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))"""

VLLM_SNIPPET = """\
pip install "falcon-h1r[vllm]"   # the vLLM release falcon-h1r is tested with, and its DeepConf backend
vllm serve {model_id} --trust-remote-code --reasoning-parser deepseek_r1 \\
    --tensor-parallel-size 2 --max-model-len 65536

curl http://localhost:8000/v1/chat/completions -H "Content-Type: application/json" -d '{{
  "model": "{model_id}", "temperature": {temperature}, "top_p": {top_p}, "max_tokens": 32768,
  "messages": [{{"role": "user", "content": "{question}"}}]}}'"""

DEEPCONF_SNIPPET = """\
pip install "falcon-h1r[vllm]"
# online DeepConf-low (keep the top 10% most confident traces), up to 512 traces, vote weighted by confidence
falcon-h1r deepconf --model {model_id} --backend vllm --tensor-parallel-size 2 \\
    --budget 512 --warmup 16 --eta 10 --json "{question}"
# CPU / small budgets: --backend transformers --budget 16"""

TRL_SNIPPET = """\
from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

trainer = SFTTrainer(
    model={model_id_q},
    args=SFTConfig(
        output_dir="falcon-h1r-sft",
        model_init_kwargs={{"trust_remote_code": True, "dtype": "bfloat16"}},
        assistant_only_loss=True,  # the chat template marks the final assistant turn for the loss
        packing=True,  # packed sequences are handled in both the attention and the Mamba branch
        learning_rate=1e-5,
        bf16=True,
    ),
    train_dataset=load_dataset("trl-lib/Capybara", split="train"),  # any conversational dataset
)
trainer.train()
# or with the package's recipes: falcon-h1r sft --config RECIPE.yaml --model_name_or_path {model_id}"""


def render_snippets(model_id: str, max_new_tokens: int = 4096) -> dict[str, str]:
    """All card snippets for `model_id` (a Hub id or a local folder)."""
    fmt = {
        "model_id": model_id,
        "model_id_q": json.dumps(model_id),
        "question": EXAMPLE_QUESTION,
        "question_q": json.dumps(EXAMPLE_QUESTION),
        "max_new_tokens": max_new_tokens,
        **RECOMMENDED_SAMPLING,
    }
    return {
        "transformers_snippet": TRANSFORMERS_SNIPPET.format(**fmt),
        "vllm_snippet": VLLM_SNIPPET.format(**fmt),
        "deepconf_snippet": DEEPCONF_SNIPPET.format(**fmt),
        "trl_snippet": TRL_SNIPPET.format(**fmt),
    }
