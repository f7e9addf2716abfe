"""Entry points read without importlib.metadata find what importlib.metadata finds."""
import importlib.metadata
import sys
import zipfile

import pytest

from nbcore.plugin import entry_points

from nbtest import write

GROUPS = ("nbcore", "console_scripts", "pytest11")


def _ours():
    return [(d.name, d.version, group, ep.name, ep.value)
            for d in entry_points.distributions() for group in GROUPS for ep in d.entry_points(group)]


def _theirs():
    return [(d.metadata["Name"], d.version, group, ep.name, ep.value)
            for d in importlib.metadata.distributions() for group in GROUPS for ep in d.entry_points if ep.group == group]


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder first on ``sys.path`` with a dist-info, an egg-info and a zip holding a third distribution."""
    folder = tmp_path / "site"
    write(folder / "nbtest_one-1.0.dist-info" / "METADATA",
          "Metadata-Version: 2.1\nName: nbtest-one\nVersion: 1.0\nSummary: x\n\nName: not a header\n")
    write(folder / "nbtest_one-1.0.dist-info" / "entry_points.txt",
          "# a comment\n[console_scripts]\nnbtest-one = nbtest_one:main\n\n[nbcore]\n"
          "nbtest-one = nbtest_one_plugin:hooks.inner [extra]\n")
    write(folder / "nbtest_two.egg-info" / "PKG-INFO", "Metadata-Version: 1.0\nName: nbtest-two\nVersion: 2.0\n")
    write(folder / "nbtest_two.egg-info" / "entry_points.txt", "[nbcore]\nnbtest-two=nbtest_two_plugin\n")
    write(folder / "nbtest_one_plugin.py", "class hooks:\n    inner = 'loaded'\n")
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("nbtest_three-3.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: nbtest-three\nVersion: 3.0\n")
        zipped.writestr("nbtest_three-3.0.dist-info/entry_points.txt", "[nbcore]\nnbtest-three = nbtest_three\n")
    monkeypatch.setattr(sys, "path", [str(folder), str(archive), folder] + sys.path)  # a path-like entry too
    return folder


def test_the_installed_entry_points_are_those_importlib_metadata_lists():
    assert _ours() == _theirs()
    assert ("nb-shm", "nb_shm.plugin") in [(ep.name, ep.value) for d in entry_points.distributions()
                                           for ep in d.entry_points("nbcore")]


def test_dist_info_egg_info_and_zip_entries(site):
    assert _ours() == _theirs()
    found = {ep.name: (d.name, d.version, ep) for d in entry_points.distributions()[:3] for ep in d.entry_points("nbcore")}
    assert {name: found[name][:2] for name in found} == {
        "nbtest-one": ("nbtest-one", "1.0"), "nbtest-two": ("nbtest-two", "2.0"), "nbtest-three": ("nbtest-three", "3.0")}
    assert found["nbtest-one"][2].load() == "loaded"


def test_a_finder_that_lists_distributions_of_its_own_is_asked(site, monkeypatch):
    class Finder:
        @staticmethod
        def find_distributions(context=None):
            return iter([importlib.metadata.PathDistribution(site / "nbtest_one-1.0.dist-info")])

    monkeypatch.setattr(sys, "meta_path", sys.meta_path + [Finder])
    names = [d.name for d in entry_points.distributions()]
    assert names == [d.metadata["Name"] for d in importlib.metadata.distributions()]
    assert names[-1] == "nbtest-one", "the finder's, after the path's"
