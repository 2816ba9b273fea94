"""Model folders on the Hugging Face Hub: `hf:owner/repo[@revision]` names one anywhere a model
folder is accepted (`models.model.resolve_model_dir`), and `upload_folder` sends one there.

Downloading uses `huggingface_hub.snapshot_download`, so a folder fetched once is found in the
hub cache with `HF_HUB_OFFLINE=1` (no network then, and a clear error when it is not cached).
"""

from __future__ import annotations

import re
from pathlib import Path

from img2prompt.errors import ConfigError, InputError

HUB_PREFIX = "hf:"
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """`hf:owner/repo@revision` -> (`owner/repo`, `revision` or None)."""
    repo, _, revision = spec.removeprefix(HUB_PREFIX).partition("@")
    if not _REPO.match(repo):
        raise ConfigError(f"{spec!r}: expected hf:owner/repo or hf:owner/repo@revision")
    return repo, revision or None


def download_model(spec: str) -> Path:
    """The local folder of `hf:owner/repo[@revision]`: downloaded, or from the hub cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    repo, revision = parse_hub_spec(spec)
    try:
        return Path(snapshot_download(repo, revision=revision, repo_type="model"))
    except (LocalEntryNotFoundError, RepositoryNotFoundError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        why = f"cannot fetch this model (offline and not in the hub cache?): {first}"
        raise InputError(spec, why) from None


def upload_folder(
    folder: str | Path,
    repo: str,
    private: bool = False,
    revision: str | None = None,
    message: str | None = None,
) -> str:
    """Upload `folder` to the hub model repository `repo` (created if missing; `revision` is a
    branch, created if missing) and return the commit URL. Checking that the folder is a model
    is the caller's job (`models.model.push_model`)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    repo, _ = parse_hub_spec(repo)
    api = HfApi()
    try:
        api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        if revision:
            api.create_branch(repo, branch=revision, repo_type="model", exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo,
            repo_type="model",
            revision=revision,
            commit_message=message or f"img2prompt model from {Path(folder).name}",
        )
    except OfflineModeIsEnabled:
        raise ConfigError(f"push to {repo}: HF_HUB_OFFLINE is set; unset it to upload") from None
    except HfHubHTTPError as e:  # no token, no write access, a bad name: the user's to fix
        first = str(e).strip().splitlines()[0]
        raise ConfigError(
            f"push to {repo}: {first} (log in: `hf auth login` or HF_TOKEN)"
        ) from None
    return str(getattr(commit, "commit_url", commit))
