"""A build takes the environment's tag only once it proves to be the spec's (no daemon: a recording client)."""
import pytest

from nbcore.plugin import InstallError

from nb_docker.images import LABEL_IMAGE_HASH, attempt_tag, is_attempt, promote
from nb_docker.plan import ImagePlan

PLAN = ImagePlan(tag="nbcore/demo:0123456789abcdef", python="python", image_hash="a" * 64)


class RecordingClient:
    """Answers ``inspect_image`` with an image labelled ``image_hash`` and records tags and removals."""

    def __init__(self, image_hash):
        self.labels = {LABEL_IMAGE_HASH: image_hash}
        self.calls = []

    def inspect_image(self, name):
        return {"Id": "sha256:built", "Config": {"Labels": self.labels}}

    def tag(self, image, repository, tag, force=False):
        self.calls.append(("tag", image, repository, tag))

    def remove_image(self, name):
        self.calls.append(("remove", name))


def test_attempt_tags_are_unique_and_recognised():
    first, second = attempt_tag(PLAN), attempt_tag(PLAN)
    assert first != second and first.startswith(PLAN.tag + "-attempt-")
    assert is_attempt(first) and not is_attempt(PLAN.tag)


def test_a_build_of_this_spec_takes_the_final_tag_and_its_attempt_tag_goes():
    api, attempt = RecordingClient(PLAN.image_hash), attempt_tag(PLAN)
    promote(api, attempt, PLAN, "the image built")
    assert api.calls == [("tag", "sha256:built", "nbcore/demo", "0123456789abcdef"), ("remove", attempt)]


def test_an_image_with_another_image_hash_never_takes_the_final_tag():
    api, attempt = RecordingClient("b" * 64), attempt_tag(PLAN)
    with pytest.raises(InstallError, match="is not the image of this spec: its label org.nbcore.image-hash is b+, "
                                           "expected a+"):
        promote(api, attempt, PLAN, "the image built")
    assert api.calls == [("remove", attempt)]
