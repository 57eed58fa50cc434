"""Find and load pretrained Demucs weights without ever touching the network.

``demucs.pretrained.get_model`` would try the HuggingFace hub, then download from
``dl.fbaipublicfiles.com`` through ``torch.hub`` (with retries). Here the weights must already be
on disk, in one of three places, searched in order:

1. ``drums.demucs.weights_dir``: a demucs *local repo* (``<sig>-<checksum>.th`` files, optionally
   ``<name>.yaml`` bag files), the layout ``demucs --repo`` reads;
2. the torch hub cache, ``torch.hub.get_dir()/checkpoints``, where demucs < 4.1 downloads
   ``<sig>-<checksum>.th`` (the names listed in ``demucs/remote/files.txt``);
3. the HuggingFace cache of ``adefossez/<repo>``, where demucs 4.1 downloads ``<sig>.safetensors``.

A named model is a *bag* (``demucs/remote/<name>.yaml``: signatures, per-source weights, segment).
Only the bag members that contribute to the drum estimate are loaded (``htdemucs_ft`` is four
specialists, one of them for drums), with demucs' own ``LocalRepo`` / ``load_safetensors_model`` and
``BagOfModels``. Anything missing raises :class:`DemucsWeightsMissing` at once, naming each file and
where to put it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from stages.drums.constants import DEMUCS_HF_NAMESPACE, DRUMS_SOURCE


class DemucsWeightsMissing(FileNotFoundError):
    """Pretrained weights are not on disk (they are never downloaded by this stage)."""

    error_type = "weights_missing"


@dataclasses.dataclass(frozen=True)
class BagPlan:
    """The members of a model bag that the drum estimate needs."""

    name: str
    signatures: tuple[str, ...]
    #: Per-member, per-source weights (None: all ones).
    weights: tuple[tuple[float, ...], ...] | None
    segment: float | None
    definition: str  # where the bag came from (yaml path, or "single model")


def _remote_root() -> Path:
    from demucs.pretrained import REMOTE_ROOT

    return Path(REMOTE_ROOT)


def remote_files() -> dict[str, str]:
    """signature -> download URL, from the ``files.txt`` shipped with demucs."""
    from demucs.pretrained import REMOTE_ROOT, _parse_remote_files

    return _parse_remote_files(Path(REMOTE_ROOT) / "files.txt")


def hub_checkpoints_dir() -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps downloaded ``.th`` files."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def plan_bag(name: str, weights_dir: str | None) -> BagPlan:
    """Read the bag definition of ``name`` (the local repo first, then demucs' own list) and keep
    the members whose weight for the drum source is not zero. A name without a bag file is a
    single model signature."""
    candidates = ([Path(weights_dir) / f"{name}.yaml"] if weights_dir else []) + [_remote_root() / f"{name}.yaml"]
    bag_file = next((p for p in candidates if p.is_file()), None)
    if bag_file is None:
        return BagPlan(name, (name,), None, None, "single model")
    try:
        bag = yaml.safe_load(bag_file.read_text())
        signatures = [str(s) for s in bag["models"]]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise ValueError(f"{bag_file}: not a demucs bag definition ({exc})") from exc
    weights = bag.get("weights")
    if weights is None:
        return BagPlan(name, tuple(signatures), None, bag.get("segment"), str(bag_file))
    # Published bags list weights in demucs' standard source order; the loaded models are checked
    # against that order in :func:`load_drums_bag`.
    drums = _standard_drums_index()
    keep = [i for i, row in enumerate(weights) if float(row[drums]) != 0.0]
    return BagPlan(name, tuple(signatures[i] for i in keep),
                   tuple(tuple(float(w) for w in weights[i]) for i in keep), bag.get("segment"), str(bag_file))


def _standard_drums_index() -> int:
    from demucs.pretrained import SOURCES

    return SOURCES.index(DRUMS_SOURCE)


def _hf_cached_file(name: str, signature: str) -> str | None:
    """Path of ``<signature>.safetensors`` in the HuggingFace cache, or None (no network)."""
    try:
        from demucs.hf import hf_repo_name
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(f"{DEMUCS_HF_NAMESPACE}/{hf_repo_name(name)}", f"{signature}.safetensors")
    return found if isinstance(found, str) else None


def _hf_hint(name: str) -> str:
    try:
        from demucs.hf import hf_repo_name
    except ImportError:
        return "needs huggingface_hub"
    return f"{DEMUCS_HF_NAMESPACE}/{hf_repo_name(name)}: <signature>.safetensors"


def _local_repos(weights_dir: str | None) -> list[Path]:
    folders = ([Path(weights_dir)] if weights_dir else []) + [hub_checkpoints_dir()]
    return [f for f in folders if f.is_dir()]


def locate_weights(plan: BagPlan, weights_dir: str | None) -> dict[str, tuple[str, Path]]:
    """signature -> ("th", local repo folder) or ("safetensors", file) for every member.

    Raises:
        DemucsWeightsMissing: naming each missing file, its download URL and where to put it.
    """
    from demucs.repo import LocalRepo, ModelLoadingError

    repos = []
    for folder in _local_repos(weights_dir):
        try:
            repos.append((folder, LocalRepo(folder)))
        except ModelLoadingError as exc:  # e.g. two files for one signature
            raise ValueError(f"{folder}: {exc}") from exc
    found: dict[str, tuple[str, Path]] = {}
    missing = []
    for signature in plan.signatures:
        folder = next((f for f, repo in repos if repo.has_model(signature)), None)
        if folder is not None:
            found[signature] = ("th", folder)
        elif (cached := _hf_cached_file(plan.name, signature)) is not None:
            found[signature] = ("safetensors", Path(cached))
        else:
            missing.append(signature)
    if missing:
        raise DemucsWeightsMissing(_missing_message(plan, missing, weights_dir))
    return found


def _missing_message(plan: BagPlan, missing: list[str], weights_dir: str | None) -> str:
    urls = remote_files()
    files = []
    for signature in missing:
        url = urls.get(signature)
        files.append(f"{url.rsplit('/', 1)[1]} (download: {url})" if url else f"{signature}.th or {signature}-<checksum>.th")
    where = "drums.demucs.weights_dir" + ("" if weights_dir and Path(weights_dir).is_dir() else ", which does not exist")
    folders = ([f"{weights_dir} ({where})"] if weights_dir else []) + [
        f"{hub_checkpoints_dir()} (torch hub cache)"]
    known = sorted(p.stem for p in _remote_root().glob("*.yaml"))
    hint = "" if plan.definition != "single model" or plan.name in urls else (
        f" '{plan.name}' is neither a known model ({', '.join(known)}) nor a signature found on disk.")
    return (
        f"demucs model '{plan.name}': pretrained weights not found, and this stage never downloads them."
        f"{hint} Missing: {'; '.join(files)}. Put the file(s) in one of: {'; '.join(folders)}"
        + (", or set drums.demucs.weights_dir" if not weights_dir else "")
        + f". The HuggingFace cache ({_hf_hint(plan.name)}) is searched too."
        + " Or use the offline separator: drums.separator: hpss."
    )


def load_drums_bag(name: str, weights_dir: str | None) -> tuple[Any, dict[str, Any]]:
    """Load the members of ``name`` needed for drums.

    Returns:
        ``(bag, record)``: a ``demucs.apply.BagOfModels`` and a JSON record of the files loaded.
    """
    from demucs.apply import BagOfModels
    from demucs.hf import load_safetensors_model
    from demucs.repo import LocalRepo

    plan = plan_bag(name, weights_dir)
    where = locate_weights(plan, weights_dir)
    models, files = [], []
    for signature in plan.signatures:
        kind, path = where[signature]
        if kind == "th":
            repo = LocalRepo(path)
            model = repo.get_model(signature)  # verifies the checksum in the file name
            files.append(Path(repo.list_model()[signature]).name)
        else:
            model = load_safetensors_model(path)
            files.append(path.name)
        if DRUMS_SOURCE not in model.sources:
            raise ValueError(f"demucs model {name} ({signature}) has no '{DRUMS_SOURCE}' source: {model.sources}")
        if plan.weights is not None and model.sources.index(DRUMS_SOURCE) != _standard_drums_index():
            raise ValueError(f"demucs bag {name}: member {signature} orders its sources {model.sources}, "
                             "unlike the bag weights")
        models.append(model)
    weights = [list(row) for row in plan.weights] if plan.weights is not None else None
    bag = BagOfModels(models, weights, plan.segment)
    bag.eval()
    record = {"bag": plan.name, "definition": Path(plan.definition).name, "members": list(plan.signatures),
              "files": files, "weights": weights}
    return bag, record


def save_to_local_repo(model: Any, folder: str | Path, signature: str, bag: str | None = None,
                       half: bool = False) -> Path:
    """Write ``model`` (a demucs model built with its ``capture_init`` arguments) into a local
    repo as ``<signature>-<sha256[:8]>.th``, the layout ``LocalRepo`` reads and checks; with
    ``bag``, also ``<bag>.yaml`` listing it, so ``model: <bag>`` finds it by name."""
    import hashlib
    import io

    import torch
    from demucs.states import serialize_model
    from omegaconf import OmegaConf

    from pipeline.atomic import atomic_write_bytes, atomic_write_text

    folder = Path(folder)
    buffer = io.BytesIO()
    torch.save(serialize_model(model, OmegaConf.create({}), half=half), buffer)
    data = buffer.getvalue()
    path = atomic_write_bytes(folder / f"{signature}-{hashlib.sha256(data).hexdigest()[:8]}.th", data)
    if bag:
        atomic_write_text(folder / f"{bag}.yaml", yaml.safe_dump({"models": [signature]}))
    return path
