"""The environment spec: what one entry under ``environments:`` asks for."""
import dataclasses
import hashlib
import json
import os
from typing import Dict, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class EnvironmentSpec:
    """A validated environment spec.

    ``sections`` holds the per-backend sections (``{"docker": {...}}``), each
    validated by the plugin that provides that backend.
    """

    python: Optional[str] = None
    packages: Tuple[str, ...] = ()
    install_script: Optional[str] = None
    backends: Tuple[str, ...] = ()
    sections: Dict[str, dict] = dataclasses.field(default_factory=dict)
    #: Where the spec came from (``file:line``), for messages.
    source: str = ""
    #: Folder install scripts run in (the config file's folder).
    base_dir: Optional[str] = None
    #: The registry of published images named by the config file's top level (not part of the identity).
    registry: Optional[str] = None
    #: The worker's working directory (``cwd:``, absolute; None: the host's); not part of the identity.
    cwd: Optional[str] = None
    #: Extra import folders (``pythonpath:``, absolute), first on the worker's ``sys.path``; not part of the identity.
    pythonpath: Tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data, source="", base_dir=None, registry=None):
        data = dict(data or {})
        folder = base_dir or os.getcwd()
        cwd = data.pop("cwd", None)
        pythonpath = data.pop("pythonpath", ()) or ()
        if isinstance(pythonpath, str):
            pythonpath = [pythonpath]
        return cls(
            cwd=os.path.normpath(os.path.join(folder, os.path.expanduser(cwd))) if cwd else None,
            pythonpath=tuple(os.path.normpath(os.path.join(folder, os.path.expanduser(p))) for p in pythonpath),
            python=str(data.pop("python")) if data.get("python") is not None else None,
            packages=tuple(data.pop("packages", ()) or ()),
            install_script=data.pop("install_script", None),
            backends=tuple(data.pop("backends", ()) or ()),
            sections=data,
            source=source,
            base_dir=base_dir,
            registry=registry,
        )

    def to_dict(self):
        out = {k: v for k, v in (("python", self.python), ("packages", list(self.packages)),
                                 ("install_script", self.install_script),
                                 ("backends", list(self.backends))) if v}
        out.update(self.sections)
        return out

    def section(self, backend: str) -> dict:
        """This spec's section for ``backend`` (empty when absent)."""
        return dict(self.sections.get(backend) or {})

    def identity(self, backend: str, provided: Optional[dict] = None) -> str:
        """The hash that names this environment on ``backend``: everything that changes what gets built.

        ``provided`` is what the backend adds (:meth:`nbcore.plugin.BackendProvider.identity`).  An
        install script runs in the config file's folder (``pip install -e .``), so that folder counts too:
        two projects with the same spec get environments of their own.
        """
        material = {
            "backend": backend,
            "python": self.python,
            "packages": list(self.packages),
            "install_script": self.install_script,
            "section": self.sections.get(backend) or {},
        }
        if self.install_script:
            material["folder"] = self.base_dir
        if provided:
            material["provided"] = provided
        blob = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()
