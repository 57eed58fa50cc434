"""The checkpoints the page may name: chordflow runs and released JASCO folders under one folder.

The page only ever sends a name from :meth:`ModelCatalog.names`; a name is looked up in that listing,
never joined to a path, so nothing typed in the page reaches the file system.
"""

from __future__ import annotations

from pathlib import Path

from chordflow.studio.config import StudioError

CHECKPOINT_NAME = "checkpoint.pt"
#: How deep under the models folder checkpoints are looked for.
MAX_DEPTH = 3


class ModelCatalog:
    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir).resolve()

    def listing(self) -> dict[str, Path]:
        """name (the folder, relative to the models folder) -> checkpoint file or JASCO folder."""
        from model.jasco.release import is_release

        found: dict[str, Path] = {}
        if not self.models_dir.is_dir():
            return found
        for folder in sorted(self._folders(self.models_dir, MAX_DEPTH)):
            name = folder.relative_to(self.models_dir).as_posix() if folder != self.models_dir else "."
            if (folder / CHECKPOINT_NAME).is_file():
                found[name] = folder / CHECKPOINT_NAME
            elif is_release(folder):
                found[name] = folder
        return found

    def _folders(self, root: Path, depth: int) -> list[Path]:
        out = [root]
        if depth:
            for child in root.iterdir():
                # a link could lead out of the models folder: only real folders inside it
                if child.is_dir() and not child.is_symlink() and not child.name.startswith("."):
                    out.extend(self._folders(child, depth - 1))
        return out

    def names(self) -> list[str]:
        return list(self.listing())

    def path_of(self, name: str | None) -> Path:
        listing = self.listing()
        if not name:
            raise StudioError(f"no model chosen; checkpoints under {self.models_dir}: {', '.join(listing) or 'none'}")
        if name not in listing:
            shown = name if len(name) <= 80 else name[:80] + "..."
            raise StudioError(f"unknown model {shown!r}: choose one of {', '.join(listing) or 'none'} "
                              f"(checkpoints under {self.models_dir})")
        return listing[name]
