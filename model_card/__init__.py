"""falcon_h1r.model_card: model card, Hub publishing, checkpoint conversion, vLLM plugin.

- `card.render_card(checkpoint, results=None, options=None)`: README.md (ModelCard with model-index).
- `publish.publish(checkpoint_dir, repo_id, *, private, revision, dry_run, token, results, ...)`: stage a complete
  Hub folder, validate it in a fresh Python without falcon_h1r, then upload.
- `convert.convert(src, dst, to="falcon_h1r" | "falcon_h1")`: bit-exact layout conversion, streaming bytes.
- `vllm_plugin.register()`: the `vllm.general_plugins` entry point. See SERVING.md (vLLM, GGUF / llama.cpp).
Submodules are imported on use.
"""
