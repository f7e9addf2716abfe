"""Helpers of the inner apptainer tests (``from innertest import ...``)."""
from nbcore.host.launch import prepare, start
from nbcore.plugin.progress import Progress


class CountingProgress(Progress):
    """A quiet progress that keeps the steps the backend announces (conversions, builds, removals)."""

    def __init__(self):
        super().__init__(quiet=True)
        self.steps = []

    def step(self, message):
        if not message.startswith(("installing environment ", "environment ")):
            self.steps.append(message)


def one_error_line(stderr):
    """The CLI's error: one line, the last of its output, no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith("nbcore: error") or "Traceback" in line]
    assert len(errors) == 1 and stderr.strip().splitlines()[-1] == errors[0], stderr
    return errors[0]


def open_env(name, **kwargs):
    config, provider, env = prepare(name, "nbcore.yaml", backend="apptainer", progress=Progress(quiet=True))
    return start(config, provider, env, **kwargs)


MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json, "
                  "application/vnd.oci.image.manifest.v1+json")


def _split(image):
    """``(host, repository, reference)`` of ``HOST/REPO:TAG`` or ``HOST/REPO@DIGEST`` (a loopback registry)."""
    host, _, rest = image.partition("/")
    if "@" in rest:
        repository, _, reference = rest.partition("@")
    else:
        repository, _, reference = rest.rpartition(":")
    return host, repository, reference


def _request(url, method="GET", data=None, headers=None):
    import urllib.request

    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read(), response.headers


def point_tag(image, source):
    """Make the tag of ``image`` name the manifest of ``source`` (same plain-http registry), over the registry API, as
    a registry account that can push would; return the digest the tag named before."""
    import json

    host, repository, tag = _split(image)
    source_host, source_repository, reference = _split(source)
    assert host == source_host
    _, before = _request("http://%s/v2/%s/manifests/%s" % (host, repository, tag), "HEAD",
                         headers={"Accept": MANIFEST_TYPES})
    body, headers = _request("http://%s/v2/%s/manifests/%s" % (host, source_repository, reference),
                             headers={"Accept": MANIFEST_TYPES})
    manifest = json.loads(body)
    if source_repository != repository:
        for blob in [manifest["config"]] + manifest["layers"]:  # the blobs must be in the target repository
            _request("http://%s/v2/%s/blobs/uploads/?mount=%s&from=%s" % (host, repository, blob["digest"],
                                                                         source_repository), "POST", b"")
    _request("http://%s/v2/%s/manifests/%s" % (host, repository, tag), "PUT", body,
             {"Content-Type": headers["Content-Type"]})
    return before["Docker-Content-Digest"]
