"""An environment's plan: its settings and the image it runs, derived once per open or install."""
import dataclasses

from .images import ImagePlan, plan_image
from .settings import ApptainerSettings


@dataclasses.dataclass
class EnvironmentPlan:
    """What :meth:`~nb_apptainer.backend.ApptainerBackend.prepare` derives from an environment.

    :attr:`runs` follows what the environment's folder records (the Docker image or the conda fallback its install
    chose); an install that makes another choice sets it (:meth:`choose`), so the open that installed sees it too.
    """

    settings: ApptainerSettings
    #: The image the environment runs and how it is made.
    runs: ImagePlan

    @classmethod
    def of(cls, env) -> "EnvironmentPlan":
        settings = ApptainerSettings.from_spec(env.spec)
        return cls(settings, plan_image(env, settings))

    def choose(self, runs: ImagePlan) -> ImagePlan:
        """Make ``runs`` the image the environment runs from now on; return it."""
        self.runs = runs
        return runs

    def rederive(self, env) -> ImagePlan:
        """Derive the image again from what ``env``'s folder now records (after an install step chose)."""
        return self.choose(plan_image(env, self.settings))
