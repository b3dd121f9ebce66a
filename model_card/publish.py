"""Publish a checkpoint to the Hugging Face Hub: stage, validate, then create the repo and upload.

Nothing is uploaded unless the staged folder passes validation (static checks + loading it with
trust_remote_code in a fresh Python without falcon_h1r and generating). Uploads are resumable: the staging
folder is deterministic per repo (default under ~/.cache/falcon_h1r/publish/), so re-running the same command
after an interruption skips what the Hub already has (huggingface_hub's upload_large_folder where available,
otherwise upload_folder, which resumes and deduplicates through hf_xet).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from falcon_h1r.model_card.card import CardOptions
from falcon_h1r.model_card.results import MetricResult
from falcon_h1r.model_card.stage import UPLOAD_IGNORE, stage_folder
from falcon_h1r.model_card.validate import ValidationReport, validate_folder


class PublishError(RuntimeError):
    """Publishing cannot proceed (offline mode, no token, bad repo id); the message says how to fix it."""


@dataclass
class PublishResult:
    repo_id: str
    folder: Path  # the staged Hub folder
    files: list[tuple[str, int]]  # (name, bytes) as uploaded / to upload
    validation: ValidationReport
    url: str | None = None  # None for dry runs
    revision: str | None = None
    log: list[str] = field(default_factory=list)


def default_staging_dir(repo_id: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "falcon_h1r" / "publish" / repo_id.replace("/", "--")


def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return env or bool(constants.HF_HUB_OFFLINE)


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PublishError(f"invalid repo id {repo_id!r}: {exc}") from exc
    if repo_id.count("/") != 1:
        raise PublishError(f"repo id {repo_id!r} must be ORG/NAME (or USER/NAME)")


def _resolve_token(token: str | None) -> str:
    """The token to upload with: the argument, else HF_TOKEN / the saved login, as huggingface_hub finds it."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise PublishError(
            "no Hugging Face token found: run `hf auth login`, set HF_TOKEN, or pass token=... (--token). "
            "Use --dry-run to stage and validate without uploading."
        )
    return token


def format_files(files: list[tuple[str, int]]) -> str:
    width = max((len(n) for n, _ in files), default=4)
    lines = [f"  {name:<{width}}  {size:>15,} B" for name, size in files]
    lines.append(f"  {'total':<{width}}  {sum(s for _, s in files):>15,} B  ({len(files)} files)")
    return "\n".join(lines)


def _upload(folder: Path, repo_id: str, *, private: bool, revision: str | None, token: str) -> str:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    large = getattr(api, "upload_large_folder", None)
    if large is not None:  # huggingface_hub 0.25-1.x: multi-worker, resumable, with progress
        large(
            repo_id=repo_id,
            folder_path=folder,
            repo_type="model",
            revision=revision,
            private=private,
            ignore_patterns=UPLOAD_IGNORE,
        )
    else:  # huggingface_hub >= 2: upload_folder itself streams, resumes and shows progress (hf_xet)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type="model",
            revision=revision,
            commit_message="Upload Falcon-H1R checkpoint (falcon-h1r publish)",
            ignore_patterns=UPLOAD_IGNORE,
        )
    return str(url)


def publish(
    checkpoint_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
    token: str | None = None,
    results: str | Path | list[MetricResult] | None = None,
    staging_dir: str | Path | None = None,
    max_shard_size: str | int = "5GB",
    card_options: CardOptions | None = None,
    load_timeout: float = 3600.0,
    echo: Callable[[str], None] = print,
) -> PublishResult:
    """Stage `checkpoint_dir` as a complete Hub folder, validate it, and (unless dry_run) upload it to `repo_id`.

    Upload preconditions (not offline, a token) are checked before the expensive staging, so a run that
    cannot upload fails in seconds. Raises PublishError / StagedFolderError / CheckpointError.
    """
    _check_repo_id(repo_id)
    if not dry_run:
        if _offline():
            raise PublishError(
                "HF_HUB_OFFLINE is set, so nothing can be uploaded. Fix: unset HF_HUB_OFFLINE, "
                "or use --dry-run to stage and validate only."
            )
        token = _resolve_token(token)
    folder = Path(staging_dir) if staging_dir is not None else default_staging_dir(repo_id)
    options = card_options or CardOptions()
    options.repo_id = options.repo_id or repo_id
    echo(f"[1/3] staging {checkpoint_dir} -> {folder}")
    staged = stage_folder(checkpoint_dir, folder, max_shard_size=max_shard_size, results=results, card_options=options)
    files = [(p.name, p.stat().st_size) for p in staged]
    echo("[2/3] validating: static checks, then loading with trust_remote_code in a fresh Python without falcon_h1r")
    report = validate_folder(folder, timeout=load_timeout)
    for warning in report.warnings:
        echo(f"  warning: {warning}")
    if report.load is not None:
        echo(
            f"  ok: {report.load.model_class} from {report.load.module.split('.')[0]}, "
            f"{report.load.new_tokens} new tokens in {report.load.seconds:.1f} s"
        )
    result = PublishResult(repo_id=repo_id, folder=folder, files=files, validation=report, revision=revision)
    if dry_run:
        echo(f"[3/3] dry run: not uploading. Files for {repo_id}:\n{format_files(files)}")
        return result
    echo(f"[3/3] uploading {len(files)} files ({sum(s for _, s in files):,} bytes) to {repo_id}")
    result.url = _upload(folder, repo_id, private=private, revision=revision, token=token)
    echo(f"done: {result.url}")
    return result
